//! The UDP and TCP layers keep a small stock of free buffers (`loopstack_buf::PoolCache`):
//! a buffer whose packet was read goes to the layer's stock, and the layer's next send
//! takes it from there, without the shared pool's lock. The pool's counters still account
//! for every buffer exactly: a stocked buffer is free, and nothing is lost when sockets or
//! the stack go away.

use std::net::SocketAddr;

use loopstack_buf::{PoolStats, MAX_STOCK};
use loopstack_link::Instant;
use loopstack_socket::{Stack, StackConfig};
use loopstack_transport::Error;

fn pairs() -> [(SocketAddr, SocketAddr); 2] {
    [
        (
            "127.0.0.1:7300".parse().unwrap(),
            "127.0.0.1:7301".parse().unwrap(),
        ),
        ("[::1]:7300".parse().unwrap(), "[::1]:7301".parse().unwrap()),
    ]
}

/// In use, stocked and allocated, over all classes.
fn counts(s: &PoolStats) -> (usize, usize, u64) {
    let stocked = s.classes.iter().map(|c| c.stocked).sum();
    (s.in_use(), stocked, s.allocated())
}

#[test]
fn udp_sends_reuse_the_buffers_of_datagrams_read() {
    for (server_addr, client_addr) in pairs() {
        let mut s = Stack::new(StackConfig::default()).unwrap();
        let now = Instant::ZERO;
        let server = s.udp_bind(server_addr).unwrap();
        let client = s.udp_bind(client_addr).unwrap();
        let burst = |s: &mut Stack, n: usize| {
            for i in 0..n {
                s.udp_send_to(now, client, &[i as u8; 64], server_addr)
                    .unwrap();
            }
            s.poll(now);
            let mut buf = [0u8; 100];
            for i in 0..n {
                let (len, from) = s.udp().recv_from(server, &mut buf).unwrap();
                assert_eq!((len, from, buf[0]), (64, client_addr, i as u8));
            }
            assert_eq!(s.udp().recv_from(server, &mut buf), Err(Error::WouldBlock));
        };
        let before = s.pool().stats().allocated();
        burst(&mut s, 10);
        // Every buffer is back and free; the ten read went to UDP's stock.
        let (in_use, stocked, allocated) = counts(&s.pool().stats());
        assert_eq!((in_use, stocked), (0, 10), "{server_addr}");
        assert_eq!(allocated - before, 10);
        // The next sends take them from the stock: the pool sees ten allocations, and the
        // stock empties while they are in flight.
        for _ in 0..10 {
            s.udp_send_to(now, client, b"again", server_addr).unwrap();
        }
        let (in_use, stocked, allocated) = counts(&s.pool().stats());
        assert_eq!((in_use, stocked, allocated - before), (10, 0, 20));
        s.poll(now);
        let mut buf = [0u8; 8];
        for _ in 0..10 {
            assert_eq!(s.udp().recv_from(server, &mut buf).unwrap().0, 5);
        }
        // A burst longer than the stock: the surplus goes back to the shared free list.
        burst(&mut s, MAX_STOCK + 20);
        let (in_use, stocked, _) = counts(&s.pool().stats());
        assert_eq!((in_use, stocked), (0, MAX_STOCK), "{server_addr}");
        // Datagrams left unread when the socket closes are freed, not leaked.
        for _ in 0..5 {
            s.udp_send_to(now, client, b"unread", server_addr).unwrap();
        }
        s.poll(now);
        s.udp().close(server).unwrap();
        assert_eq!(s.pool().stats().in_use(), 0, "{server_addr}");
        // Dropping the stack returns every stock to the pool's free lists.
        let pool = s.pool().clone();
        drop(s);
        let (in_use, stocked, _) = counts(&pool.stats());
        assert_eq!((in_use, stocked), (0, 0), "{server_addr}");
    }
}

#[test]
fn tcp_segments_reuse_the_buffers_of_data_read() {
    for (server_addr, _) in pairs() {
        let mut s = Stack::new(StackConfig::default()).unwrap();
        let now = Instant::ZERO;
        let l = s.tcp_listen(server_addr, 4).unwrap();
        let c = s.tcp_connect(now, server_addr).unwrap();
        s.poll(now);
        let (a, _) = s.tcp().accept(l).unwrap();
        let mut buf = [0u8; 16];
        let mut stocked_seen = 0;
        for round in 0..20u8 {
            s.tcp().send(c, &[round; 8]).unwrap();
            s.poll(now);
            assert_eq!(s.tcp().recv(a, &mut buf), Ok(8));
            assert_eq!(buf[..8], [round; 8]);
            s.tcp().send(a, &[!round; 8]).unwrap();
            s.poll(now);
            assert_eq!(s.tcp().recv(c, &mut buf), Ok(8));
            assert_eq!(buf[..8], [!round; 8]);
            let (in_use, stocked, _) = counts(&s.pool().stats());
            // Nothing is out between round trips, and reading put the segments' buffers
            // into TCP's stock, from which the next round's segments are built.
            assert_eq!(in_use, 0, "{server_addr}, round {round}");
            stocked_seen = stocked_seen.max(stocked);
        }
        assert!(
            stocked_seen > 0,
            "{server_addr}: TCP never stocked a buffer"
        );
        assert!(stocked_seen <= 2 * MAX_STOCK);
        let pool = s.pool().clone();
        drop(s);
        let (in_use, stocked, _) = counts(&pool.stats());
        assert_eq!((in_use, stocked), (0, 0), "{server_addr}");
    }
}
