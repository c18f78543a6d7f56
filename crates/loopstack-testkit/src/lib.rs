//! Test helpers shared by loopstack's crates (a dev-dependency only).
//!
//! [`CountingAllocator`] proves "no heap allocation per packet once warm": install it as the
//! global allocator of a test binary, warm the code up, then count what a section allocates
//! on the current thread:
//! (the example names placeholder functions, so it is shown, not compiled)
//! ```text
//! use loopstack_testkit::{allocations_during, CountingAllocator};
//!
//! #[global_allocator]
//! static GLOBAL: CountingAllocator = CountingAllocator;
//!
//! #[test]
//! fn hot_path_allocates_nothing() {
//!     warm_up();
//!     assert_eq!(allocations_during(|| hot_path()), 0);
//! }
//! ```
//!
//! Only allocations made by threads that are *measuring* are counted, so the test harness's
//! own threads do not disturb the count. Threads a test spawns opt in with
//! [`start_measuring`] and [`stop_measuring`].
//!
//! [`SharedBuf`] is a writer the test keeps reading after it handed a clone to the code
//! under test (a pcap capture's sink, say).

// A global allocator can only be written with `unsafe`. This one is the only `unsafe` in
// the workspace, and it forwards every call to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const` thread-local: no lazy initialisation, so reading it inside the allocator
    // cannot recurse into the allocator.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting allocations (and reallocations) made by measuring threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

fn count() {
    if MEASURING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting this thread's allocations.
pub fn start_measuring() {
    MEASURING.with(|m| m.set(true));
}

/// Stops counting this thread's allocations.
pub fn stop_measuring() {
    MEASURING.with(|m| m.set(false));
}

/// Allocations counted so far, over all measuring threads.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// Runs `f` on this thread while measuring, and returns how many allocations it made
/// (only meaningful with [`CountingAllocator`] installed as the global allocator).
pub fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = allocations();
    start_measuring();
    f();
    stop_measuring();
    allocations() - before
}

/// A `Write` whose bytes the test can still read after the code under test owns a clone of
/// it: every clone appends to the same buffer.
#[derive(Debug, Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// A copy of everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A writer that panicked mid-append leaves whole bytes behind: still worth reading.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
