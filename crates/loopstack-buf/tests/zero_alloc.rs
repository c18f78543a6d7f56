//! Proof that a warm pool never touches the heap: a counting global allocator watches one
//! million packets being allocated, filled, edited and freed across two threads.
//!
//! This file holds exactly one test so that no other test's allocations run concurrently
//! with the measured section.

use crossbeam_channel::{TryRecvError, TrySendError};
use loopstack_buf::{PacketPool, PoolConfig};
use loopstack_testkit::{allocations, start_measuring, stop_measuring, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const PACKETS: usize = 1_000_000;

#[test]
fn a_million_packets_across_two_threads_allocate_nothing() {
    // Warm-up happens in `PacketPool::new`: every buffer is allocated there, once.
    let pool = PacketPool::new(PoolConfig::default()).unwrap();
    // A bounded channel's slots are allocated when it is built, not per message. The test
    // uses only `try_send`/`try_recv`, which never block: a thread's first *blocking* wait
    // on a channel allocates a wait context once, and that is the channel's warm-up, not
    // the packet path's.
    let (tx, rx) = crossbeam_channel::bounded(256);

    // Producer: half of the packets are allocated here and freed by the consumer (the
    // cross-thread path); the other half are allocated and freed here. Every 16th packet is
    // a large one, so both size classes are exercised.
    let producer = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let payload = [0x5Au8; 1400];
            start_measuring();
            for i in 0..PACKETS / 2 {
                let size = if i % 16 == 0 { 60_000 } else { 64 + i % 1300 };
                let mut buf = pool.alloc(size).unwrap();
                buf.extend_from_slice(&payload[..size.min(1400)]).unwrap();
                if size > 1400 {
                    buf.append(size - 1400).unwrap();
                }
                buf.prepend(8).unwrap()[0] = 0x11;
                buf.prepend(20).unwrap()[0] = 0x45;
                let mut pending = buf;
                loop {
                    match tx.try_send(pending) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            pending = back;
                            std::thread::yield_now();
                        }
                        Err(TrySendError::Disconnected(_)) => panic!("consumer gone"),
                    }
                }
                let local = pool.alloc_from_slice(&payload[..40]).unwrap();
                drop(local);
            }
            stop_measuring();
        })
    };
    let consumer = std::thread::spawn(move || {
        let mut received = 0usize;
        let mut bytes = 0usize;
        start_measuring();
        loop {
            let mut buf = match rx.try_recv() {
                Ok(buf) => buf,
                Err(TryRecvError::Empty) => {
                    std::thread::yield_now();
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            };
            buf.strip_front(28).unwrap();
            bytes += buf.len();
            received += 1;
            drop(buf);
        }
        stop_measuring();
        (received, bytes)
    });

    producer.join().expect("producer thread");
    let (received, bytes) = consumer.join().expect("consumer thread");
    assert_eq!(received, PACKETS / 2);
    assert!(bytes > PACKETS / 2 * 64);
    let stats = pool.stats();
    assert_eq!(stats.in_use(), 0, "every buffer went back to the pool");
    assert_eq!(stats.allocated(), PACKETS as u64);
    let allocations = allocations();
    assert_eq!(
        allocations, 0,
        "the packet path allocated on the heap {allocations} times"
    );
}
