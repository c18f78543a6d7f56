//! Test and benchmark helpers shared by loopstack's crates: a dependency of tests and of the
//! benchmark binaries only, never of the stack itself.
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
//!
//! [`PageAlignedLarge`] is the global allocator of the side-by-side timing binaries: it
//! starts every allocation of 32 KiB or more on a page boundary, so that where malloc
//! happens to put a large buffer cannot decide a bulk benchmark's result.

// A global allocator can only be written with `unsafe`. These two are the only `unsafe` in
// the workspace; both forward every call to the system allocator, one unchanged, the other
// with a larger alignment for large blocks.
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

/// The system allocator, with every block of [`LARGE`] bytes or more aligned to a 4 KiB page.
///
/// On the AMD EPYC VM the benchmarks run on, glibc copies 64 KiB with `rep movsb`, which
/// runs about 15 times slower when the destination is 1 to 31 bytes ahead of the source
/// modulo 4 KiB (docs/benchmarks.md). A bulk benchmark copies 64 KiB between buffers that
/// malloc placed, some of them inside a peer's code (smoltcp's `Loopback` allocates a
/// `Vec` per packet and copies payload between it and its socket rings). So an unrelated
/// change to what the process allocated earlier could move a peer into the slow case and
/// cut its bulk figure to a fifth (it did, to smoltcp over IPv6, in the eleventh session).
/// With every large block at offset 0 of a page, two large blocks are a whole number of
/// pages apart, and a copy between them is only ever as far ahead as the offsets inside
/// them make it (a 40- to 60-byte header, say), which is out of the slow range.
///
/// The threshold is 32 KiB, not 64: smoltcp's per-packet `Vec` is exactly one packet
/// long, at most 65,535 bytes, one byte short of 64 KiB. With a 64 KiB threshold it was
/// left where malloc put it, and in the twelfth session's run that was the slow case again:
/// smoltcp's bulk measured 1.4 GB/s in criterion until the threshold came down.
///
/// Smaller blocks are left exactly as the system allocator places them.
///
/// Not for measuring memory: the system allocator zeroes an over-aligned block by hand,
/// where `calloc` leaves fresh pages untouched, so every page of a large zeroed block
/// (a packet pool's) becomes resident.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageAlignedLarge;

/// The size from which [`PageAlignedLarge`] aligns a block to a page: 32 KiB.
pub const LARGE: usize = 32 * 1024;

/// The page size the copy slowdown repeats with.
const PAGE: usize = 4096;

/// The layout `System` gets for `layout`: page-aligned when large.
fn placed(layout: Layout) -> Layout {
    if layout.size() >= LARGE && layout.align() < PAGE {
        // A size below `isize::MAX` rounded up to a page cannot overflow, so this never
        // fails; falling back to the layout as it is would still be correct.
        Layout::from_size_align(layout.size(), PAGE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every method hands `System` a layout of the same size and at least the
// requested alignment, and frees each block with the layout it was allocated with
// (`placed` depends on the size and alignment only, which the caller passes back
// unchanged). `realloc` moves a block whose placement changes by hand, as
// `GlobalAlloc::realloc`'s own default does.
unsafe impl GlobalAlloc for PageAlignedLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(placed(layout)) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, placed(layout)) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(placed(layout)) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = placed(layout);
        // The caller guarantees that this layout is valid (`GlobalAlloc::realloc`).
        let new = placed(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) });
        if old.align() == new.align() {
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        moved
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
