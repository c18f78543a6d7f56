//! The physical limit of a two-thread bulk transfer: one thread copies each 64 KiB chunk
//! into one of two slots, the other copies it out, and each waits for the other by
//! spinning on a counter. No stack and no protocol: the two copies and the hand-over of
//! every chunk from one CPU's caches to the other's, which is what blocking mode's bulk
//! transfer (and the kernel's `lo` between two threads) cannot avoid either.
//!
//! On this project's 2-vCPU VMs that hand-over is what moves between runs: where the host
//! runs the two vCPUs decides how fast a chunk written on one is read on the other, and
//! runs of this limit alone land near 2, 7 or 28 GB/s, with loopstack's blocking bulk
//! following it run by run (docs/benchmarks.md, item 35). `cargo xtask bench` measures it
//! right after the bulk rows and reports it beside memcpy's limit, so that a blocking row
//! can be read against what the machine allowed at the time.
//!
//! Safe code only: each slot is a `Mutex<Vec<u8>>`, never contended (the counters decide
//! who may touch a slot), so taking it costs an uncontended atomic each way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use super::threads::{spin_wait, SPINS, TIMEOUT};
use super::{pattern, Bulk, BULK_CHUNK};

/// Chunks in flight at most: one being read while the next is written, as a stack with a
/// 64 KiB window and a spare send-buffer block allows.
const SLOTS: usize = 2;

/// What both threads share.
struct Shared {
    slots: [Mutex<Vec<u8>>; SLOTS],
    /// Chunks written so far.
    written: AtomicU64,
    /// Chunks read so far.
    read: AtomicU64,
    /// Set when the writer goes away: the reader stops.
    stop: AtomicBool,
    /// Set by the reader if a chunk arrived out of order or damaged.
    broken: AtomicBool,
}

/// The writer's end; the reader runs on a thread of its own until this is dropped.
pub struct Handoff {
    shared: Arc<Shared>,
    data: Vec<u8>,
    reader: Option<JoinHandle<()>>,
}

/// Writes the chunk's number into its first 8 bytes, where the reader checks it.
fn stamp(chunk: &mut [u8], n: u64) {
    chunk[..8].copy_from_slice(&n.to_le_bytes());
}

/// A writer and a reader thread, connected and warmed up.
pub fn handoff() -> Handoff {
    let shared = Arc::new(Shared {
        slots: std::array::from_fn(|_| Mutex::new(vec![0; BULK_CHUNK])),
        written: AtomicU64::new(0),
        read: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        broken: AtomicBool::new(false),
    });
    let reader = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("sbs-handoff".into())
            .spawn(move || read_all(&shared))
            .expect("spawn the handoff reader")
    };
    let mut h = Handoff {
        shared,
        data: (0..BULK_CHUNK).map(pattern).collect(),
        reader: Some(reader),
    };
    h.transfer(super::WARM_UP);
    h
}

/// The reader: copies every chunk out as it comes, checks its number and its last byte.
fn read_all(shared: &Shared) {
    let mut out = vec![0u8; BULK_CHUNK];
    let mut n = 0u64;
    loop {
        let start = Instant::now();
        let mut looks = 0u64;
        while shared.written.load(Ordering::Acquire) <= n {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            looks = looks.saturating_add(1);
            if looks < SPINS {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
                // An idle reader between benchmarks waits as long as it takes; it only
                // stops yielding so often once it has waited a while.
                if start.elapsed() > TIMEOUT {
                    thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        let slot = (n % SLOTS as u64) as usize;
        {
            let chunk = shared.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
            out.copy_from_slice(&chunk);
        }
        let intact = out[..8] == n.to_le_bytes() && out[BULK_CHUNK - 1] == pattern(BULK_CHUNK - 1);
        if !intact {
            shared.broken.store(true, Ordering::Release);
        }
        n += 1;
        shared.read.store(n, Ordering::Release);
    }
}

impl Bulk for Handoff {
    fn transfer(&mut self, chunks: usize) {
        let shared = &*self.shared;
        let start = shared.written.load(Ordering::Relaxed);
        let end = start + chunks as u64;
        for n in start..end {
            // The slot is free once the reader has taken the chunk SLOTS before this one.
            let free = spin_wait(|| shared.read.load(Ordering::Acquire) + SLOTS as u64 > n);
            assert!(free, "handoff: the reader fell behind for 10 s");
            {
                let slot = (n % SLOTS as u64) as usize;
                let mut chunk = shared.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
                chunk.copy_from_slice(&self.data);
                stamp(&mut chunk, n);
            }
            shared.written.store(n + 1, Ordering::Release);
        }
        let done = spin_wait(|| shared.read.load(Ordering::Acquire) >= end);
        assert!(done, "handoff: the reader did not finish in 10 s");
        assert!(
            !shared.broken.load(Ordering::Acquire),
            "handoff: a chunk arrived out of order or damaged"
        );
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
