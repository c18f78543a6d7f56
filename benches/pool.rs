//! Packet pool benchmarks: what one packet's buffer costs, on one thread and across two.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::bounded;
use loopstack_benches::default_pool;
use loopstack_buf::PacketBuf;

fn single_thread(c: &mut Criterion) {
    let pool = default_pool();
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(1));
    g.bench_function("alloc+free small (1 thread)", |b| {
        b.iter(|| black_box(pool.alloc(black_box(64)).unwrap()))
    });
    g.bench_function("alloc+free large (1 thread)", |b| {
        b.iter(|| black_box(pool.alloc(black_box(65536)).unwrap()))
    });
    let payload = [0x5Au8; 1400];
    g.bench_function("alloc+copy 1400 B+prepend 28 B+free", |b| {
        b.iter(|| {
            let mut buf = pool.alloc_from_slice(black_box(&payload)).unwrap();
            buf.prepend(8).unwrap();
            buf.prepend(20).unwrap();
            black_box(buf)
        })
    });
    g.bench_function("try_clone small", |b| {
        let original = pool.alloc_from_slice(&payload[..64]).unwrap();
        // `iter`, not `iter_batched`: a batch would hold thousands of clones at once and
        // exhaust the pool. Each clone is dropped before the next is made.
        b.iter(|| black_box(original.try_clone().unwrap()))
    });
    g.finish();
}

/// Allocation on one thread, free on another: the path of a packet handed from a sending
/// thread to a receiving one. A consumer thread drops what the benchmark thread sends; the
/// measured time per packet covers alloc, the channel hand-off and the remote free.
fn two_threads(c: &mut Criterion) {
    let pool = default_pool();
    let (tx, rx) = bounded::<PacketBuf>(512);
    let (done_tx, done_rx) = bounded::<()>(1);
    let consumer = thread::spawn(move || {
        while let Ok(buf) = rx.recv() {
            let last = buf.len() == 1;
            drop(buf);
            if last {
                let _ = done_tx.send(());
            }
        }
    });
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(1));
    g.bench_function("alloc here, free on another thread", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut buf = pool.alloc(64).unwrap();
                buf.append(2).unwrap();
                tx.send(buf).unwrap();
            }
            // A one-byte packet marks the end of the batch.
            let mut last = pool.alloc(64).unwrap();
            last.append(1).unwrap();
            tx.send(last).unwrap();
            done_rx.recv_timeout(Duration::from_secs(60)).unwrap();
            start.elapsed()
        })
    });
    g.finish();
    drop(tx);
    consumer.join().unwrap();
}

criterion_group!(benches, single_thread, two_threads);
criterion_main!(benches);
