//! Blocking-mode ICMP echo: every public call of [`IcmpSocket`] and every error kind it
//! reports, over IPv4 (ICMP) and IPv6 (ICMPv6) on one in-process `lo`.
//!
//! Each scenario is a function taking a [`Family`]; `both_families!` turns it into two
//! tests, `scenario::v4` and `scenario::v6`.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::Duration;

use loopstack_internet::route::Route;
use loopstack_socket::{IcmpSocket, Net};

#[macro_use]
mod common;
use common::*;

// ---------------------------------------------------------------------- helpers

/// Asserts no reply is waiting for `s`.
#[track_caller]
fn assert_no_reply(s: &IcmpSocket) {
    s.set_nonblocking(true).unwrap();
    let r = s.recv();
    s.set_nonblocking(false).unwrap();
    assert_eq!(kind(r), ErrorKind::WouldBlock);
}

both_families!(
    bind_port_zero_picks_an_identifier,
    bind_explicit_identifier,
    bind_tries_each_address,
    bind_addr_in_use,
    bind_addr_not_available,
    echo_round_trip,
    echo_to_another_local_address,
    two_sockets_see_only_their_own_replies,
    family_mismatch_is_invalid_input,
    read_timeout_option_and_expiry,
    write_timeout_option,
    nonblocking_mode,
    try_clone_shares_the_identifier,
    dropping_frees_the_identifier,
    a_full_reply_queue_drops_new_replies,
    network_and_host_unreachable,
    no_reply_when_echo_replies_are_off,
    a_blocked_recv_wakes_for_a_reply_from_another_thread,
);

// ---------------------------------------------------------------------- binding

fn bind_port_zero_picks_an_identifier(f: Family) {
    let net = Net::new().unwrap();
    let a = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    assert_ne!(a.id(), 0);
    assert_eq!(a.local_addr().unwrap(), f.lo(a.id()));
    let b = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    assert_ne!(b.id(), 0);
    assert_ne!(b.id(), a.id(), "two sockets, two identifiers");
    // The unspecified address is accepted, and kept.
    let any = IcmpSocket::bind(&net, SocketAddr::new(f.any, 0)).unwrap();
    assert_eq!(any.local_addr().unwrap().ip(), f.any);
    assert!(![a.id(), b.id()].contains(&any.id()));
    // String form (a literal: no resolver).
    let text = match f.lo {
        IpAddr::V4(_) => "127.0.0.1:0",
        IpAddr::V6(_) => "[::1]:0",
    };
    let s = IcmpSocket::bind(&net, text).unwrap();
    assert_eq!(s.local_addr().unwrap().ip(), f.lo);
    // Port 0 never takes an identifier in use, even one claimed explicitly.
    let next = IcmpSocket::bind(&net, f.lo(0)).unwrap().id();
    let _explicit = IcmpSocket::bind(&net, f.lo(next.wrapping_add(1))).unwrap();
    let after = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    assert_ne!(after.id(), next.wrapping_add(1));
}

fn bind_explicit_identifier(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(4242)).unwrap();
    assert_eq!(s.id(), 4242);
    assert_eq!(s.local_addr().unwrap(), f.lo(4242));
    // Requests carry it, and its replies come back to it.
    s.send_to(f.lo, 1, 16).unwrap();
    assert_eq!(s.recv().unwrap().id, 4242);
    let max = IcmpSocket::bind(&net, f.lo(u16::MAX)).unwrap();
    assert_eq!(max.id(), u16::MAX);
}

fn bind_tries_each_address(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, &[SocketAddr::new(f.foreign, 7), f.lo(7)][..]).unwrap();
    assert_eq!(s.local_addr().unwrap(), f.lo(7));
    let t = IcmpSocket::bind(&net, &[f.lo(7), f.lo(8)][..]).unwrap();
    assert_eq!(t.id(), 8);
    assert_eq!(
        kind(IcmpSocket::bind(
            &net,
            &[SocketAddr::new(f.foreign, 9), f.lo(7)][..]
        )),
        ErrorKind::AddrInUse
    );
    let none: &[SocketAddr] = &[];
    assert_eq!(kind(IcmpSocket::bind(&net, none)), ErrorKind::InvalidInput);
}

fn bind_addr_in_use(f: Family) {
    let net = Net::new().unwrap();
    let a = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    assert_eq!(
        kind(IcmpSocket::bind(&net, f.lo(a.id()))),
        ErrorKind::AddrInUse
    );
    // The identifier is the stack's, whatever address the socket is bound to.
    assert_eq!(
        kind(IcmpSocket::bind(&net, SocketAddr::new(f.any, a.id()))),
        ErrorKind::AddrInUse
    );
    assert_eq!(
        kind(IcmpSocket::bind(&net, SocketAddr::new(f.lo2, a.id()))),
        ErrorKind::AddrInUse
    );
}

fn bind_addr_not_available(f: Family) {
    let net = Net::new().unwrap();
    assert_eq!(
        kind(IcmpSocket::bind(&net, SocketAddr::new(f.foreign, 0))),
        ErrorKind::AddrNotAvailable
    );
    assert_eq!(
        kind(IcmpSocket::bind(&net, SocketAddr::new(f.foreign, 99))),
        ErrorKind::AddrNotAvailable
    );
    // A refused bind claims no identifier.
    IcmpSocket::bind(&net, f.lo(99)).unwrap();
}

// ---------------------------------------------------------------------- echo

fn echo_round_trip(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    s.send_to(f.lo, 7, 56).unwrap();
    let r = s.recv().unwrap();
    assert_eq!(r.from, f.lo);
    assert_eq!(r.id, s.id());
    assert_eq!(r.seq, 7);
    // ICMP header (8) + data, as ping reports it.
    assert_eq!(r.len, 64);
    assert_eq!(r.ttl, 64, "the default TTL / hop limit");
    let rtt = r.rtt.expect("56 bytes carry the send time");
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");

    // Several requests: replies in order, each with its own sequence number and size.
    for (seq, size) in [(100u16, 0usize), (101, 7), (102, 8), (103, 1000)] {
        s.send_to(f.lo, seq, size).unwrap();
    }
    for (seq, size) in [(100u16, 0usize), (101, 7), (102, 8), (103, 1000)] {
        let r = s.recv().unwrap();
        assert_eq!((r.seq, r.len, r.from), (seq, 8 + size, f.lo));
        // The send time fits in 8 bytes or more only.
        assert_eq!(r.rtt.is_some(), size >= 8, "size {size}");
    }
    assert_no_reply(&s);

    // A request too large for any buffer is refused up front.
    assert_eq!(kind(s.send_to(f.lo, 200, 70_000)), ErrorKind::InvalidInput);
    assert_no_reply(&s);
}

fn echo_to_another_local_address(f: Family) {
    let net = Net::new().unwrap();
    // Bound to the unspecified address; pinging another local address (127.0.0.2 on
    // IPv4): the reply comes from where the request went.
    let s = IcmpSocket::bind(&net, SocketAddr::new(f.any, 0)).unwrap();
    s.send_to(f.lo2, 1, 32).unwrap();
    let r = s.recv().unwrap();
    assert_eq!((r.from, r.seq, r.len), (f.lo2, 1, 40));
}

fn two_sockets_see_only_their_own_replies(f: Family) {
    let net = Net::new().unwrap();
    let a = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    let b = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    a.send_to(f.lo, 1, 16).unwrap();
    b.send_to(f.lo, 2, 24).unwrap();
    a.send_to(f.lo, 3, 16).unwrap();
    let r = a.recv().unwrap();
    assert_eq!((r.id, r.seq, r.len), (a.id(), 1, 24));
    let r = a.recv().unwrap();
    assert_eq!((r.id, r.seq), (a.id(), 3));
    assert_no_reply(&a);
    let r = b.recv().unwrap();
    assert_eq!((r.id, r.seq, r.len), (b.id(), 2, 32));
    assert_no_reply(&b);
    assert_eq!(net.stats().echo_dropped, 0);
}

fn family_mismatch_is_invalid_input(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    assert_eq!(kind(s.send_to(f.other, 1, 8)), ErrorKind::InvalidInput);
    let any = IcmpSocket::bind(&net, SocketAddr::new(f.any, 0)).unwrap();
    assert_eq!(kind(any.send_to(f.other, 1, 8)), ErrorKind::InvalidInput);
    assert_no_reply(&s);
    assert_no_reply(&any);
}

// ---------------------------------------------------------------------- options

fn read_timeout_option_and_expiry(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    assert_eq!(s.read_timeout().unwrap(), None);
    assert_eq!(
        kind(s.set_read_timeout(Some(Duration::ZERO))),
        ErrorKind::InvalidInput
    );
    let t = Duration::from_millis(100);
    s.set_read_timeout(Some(t)).unwrap();
    assert_eq!(s.read_timeout().unwrap(), Some(t));
    let (r, took) = timed(|| s.recv());
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(took >= t, "returned after {took:?}");
    assert!(took < Duration::from_secs(3), "returned after {took:?}");
    // With a reply waiting, the timeout does not matter.
    s.send_to(f.lo, 5, 8).unwrap();
    assert_eq!(s.recv().unwrap().seq, 5);
    s.set_read_timeout(None).unwrap();
    assert_eq!(s.read_timeout().unwrap(), None);
}

fn write_timeout_option(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    assert_eq!(s.write_timeout().unwrap(), None);
    assert_eq!(
        kind(s.set_write_timeout(Some(Duration::ZERO))),
        ErrorKind::InvalidInput
    );
    let t = Duration::from_millis(300);
    s.set_write_timeout(Some(t)).unwrap();
    assert_eq!(s.write_timeout().unwrap(), Some(t));
    s.send_to(f.lo, 1, 8).unwrap();
    assert_eq!(s.recv().unwrap().seq, 1);
    s.set_write_timeout(None).unwrap();
    assert_eq!(s.write_timeout().unwrap(), None);
}

fn nonblocking_mode(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    s.set_nonblocking(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (r, took) = timed(|| s.recv());
    assert_eq!(kind(r), ErrorKind::WouldBlock);
    assert!(took < Duration::from_secs(1), "waited {took:?}");
    // Sending works non-blocking, and the reply is there at once.
    s.send_to(f.lo, 9, 8).unwrap();
    assert_eq!(s.recv().unwrap().seq, 9);
    assert_eq!(kind(s.recv()), ErrorKind::WouldBlock);
}

fn try_clone_shares_the_identifier(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    let clone = s.try_clone().unwrap();
    assert_eq!(clone.id(), s.id());
    assert_eq!(clone.local_addr().unwrap(), s.local_addr().unwrap());
    // A request sent through one handle is answered to both (one queue).
    clone.send_to(f.lo, 1, 8).unwrap();
    assert_eq!(s.recv().unwrap().seq, 1);
    assert_no_reply(&clone);
    // Options are shared.
    clone.set_nonblocking(true).unwrap();
    assert_eq!(kind(s.recv()), ErrorKind::WouldBlock);
    clone.set_nonblocking(false).unwrap();
    clone
        .set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(30)));
    // The identifier stays claimed until the last handle goes.
    let id = s.id();
    drop(s);
    assert_eq!(kind(IcmpSocket::bind(&net, f.lo(id))), ErrorKind::AddrInUse);
    clone.send_to(f.lo, 2, 8).unwrap();
    assert_eq!(clone.recv().unwrap().seq, 2);
    drop(clone);
    IcmpSocket::bind(&net, f.lo(id)).unwrap();
}

fn dropping_frees_the_identifier(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    let id = s.id();
    s.send_to(f.lo, 1, 8).unwrap();
    drop(s);
    // Bound again; the old socket's unread reply went with it.
    let again = IcmpSocket::bind(&net, f.lo(id)).unwrap();
    assert_eq!(again.id(), id);
    assert_no_reply(&again);
    again.send_to(f.lo, 2, 8).unwrap();
    assert_eq!(again.recv().unwrap().seq, 2);
}

fn a_full_reply_queue_drops_new_replies(f: Family) {
    // Replies kept per socket (`ECHO_QUEUE` in src/net.rs).
    const KEPT: u16 = 64;
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    for seq in 0..KEPT + 6 {
        s.send_to(f.lo, seq, 8).unwrap();
    }
    // The queue holds the first 64; the later ones were dropped and counted, as a full
    // socket receive buffer drops new packets on Linux.
    for seq in 0..KEPT {
        assert_eq!(s.recv().unwrap().seq, seq);
    }
    assert_no_reply(&s);
    assert_eq!(net.stats().echo_dropped, 6);
}

fn network_and_host_unreachable(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    // No route to the documentation prefix: nothing is sent.
    assert_eq!(
        kind(s.send_to(f.foreign, 1, 8)),
        ErrorKind::NetworkUnreachable
    );
    let removed = net
        .with(|st| st.ip_mut().routes_mut().remove(f.local_route(), 0))
        .unwrap();
    assert_eq!(kind(s.send_to(f.lo, 2, 8)), ErrorKind::NetworkUnreachable);
    net.with(|st| {
        st.ip_mut()
            .routes_mut()
            .add(Route::unreachable(f.local_route()))
    })
    .unwrap();
    assert_eq!(kind(s.send_to(f.lo, 3, 8)), ErrorKind::HostUnreachable);
    net.with(|st| {
        let routes = st.ip_mut().routes_mut();
        routes.remove(f.local_route(), 0).unwrap();
        routes.add(removed).unwrap();
    });
    assert_no_reply(&s);
    s.send_to(f.lo, 4, 8).unwrap();
    assert_eq!(s.recv().unwrap().seq, 4);
}

fn no_reply_when_echo_replies_are_off(f: Family) {
    let net = Net::new().unwrap();
    net.with(|st| st.ip_mut().config_mut().echo_reply = false);
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.send_to(f.lo, 1, 8).unwrap();
    assert_eq!(kind(s.recv()), ErrorKind::WouldBlock);
    net.with(|st| st.ip_mut().config_mut().echo_reply = true);
    s.send_to(f.lo, 2, 8).unwrap();
    assert_eq!(s.recv().unwrap().seq, 2);
}

fn a_blocked_recv_wakes_for_a_reply_from_another_thread(f: Family) {
    let net = Net::new().unwrap();
    let s = IcmpSocket::bind(&net, f.lo(0)).unwrap();
    let clone = s.try_clone().unwrap();
    let lo = f.lo;
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        clone.send_to(lo, 77, 8).unwrap();
    });
    let (r, took) = timed(|| s.recv());
    sender.join().unwrap();
    assert_eq!(r.unwrap().seq, 77);
    assert!(
        took >= Duration::from_millis(40),
        "recv returned after {took:?}"
    );
}
