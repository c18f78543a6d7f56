//! A non-blocking socket that finds nothing to do returns `WouldBlock` without allocating:
//! an event loop polls its sockets far more often than they have data, so that error is its
//! steady state. (std's sockets allocate nothing for it either.)
//!
//! One test per file, so that no other test allocates while this one counts.

use std::io::{ErrorKind, Read};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use loopstack_socket::{Net, TcpListener, TcpStream, UdpSocket};
use loopstack_testkit::{allocations_during, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Makes this thread wait once for a `parking_lot` lock that another thread holds.
///
/// parking_lot allocates a thread's bookkeeping (and may grow its global table) the first
/// time that thread has to wait. The stack's timer thread takes the stack's lock when it
/// wakes, so on a loaded machine a socket call can meet it there: once per thread, not per
/// call. An event loop has long paid that by the time it polls in its steady state; this
/// pays it before the count starts, so the count sees only what each call costs.
fn wait_once_for_a_lock() {
    let lock = Arc::new(parking_lot::Mutex::new(()));
    let (held, taken) = mpsc::channel();
    let holder = {
        let lock = Arc::clone(&lock);
        std::thread::spawn(move || {
            let _guard = lock.lock();
            held.send(()).unwrap();
            // Long enough that the other thread stops spinning and parks.
            std::thread::sleep(Duration::from_millis(20));
        })
    };
    taken.recv().unwrap();
    drop(lock.lock());
    holder.join().unwrap();
}

#[test]
fn would_block_allocates_nothing() {
    wait_once_for_a_lock();
    let net = Net::new().unwrap();
    let udp = UdpSocket::bind(&net, "127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let listener = TcpListener::bind(&net, "[::1]:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut client = TcpStream::connect(&net, listener.local_addr().unwrap()).unwrap();
    client.set_nonblocking(true).unwrap();
    let (server, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut try_all = || {
        let e = udp.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let e = client.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let e = listener.accept().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
    };
    for _ in 0..10 {
        try_all();
    }
    assert_eq!(
        allocations_during(|| {
            for _ in 0..100 {
                try_all();
            }
        }),
        0
    );
    drop(server);
}
