//! A layer's private stock of free buffers, in front of the shared pool.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::buf::{PacketBuf, Slot};
use crate::error::PoolError;
use crate::pool::{filled, PacketPool};

/// The most free buffers one cache keeps per size class.
///
/// 32 is one burst of the side-by-side UDP scenario, and more than a TCP round trip keeps
/// out at once; a burst longer than the stock still works, its surplus going back to the
/// free list as before.
pub const MAX_STOCK: usize = 32;

/// Classes with fewer buffers than this many times their stock's size are stocked less,
/// down to not at all (see [`stock_limit`]).
const SHARE: usize = 16;

/// How many free buffers a cache keeps of a class of `count` buffers: a sixteenth of the
/// class, at most [`MAX_STOCK`].
pub(crate) fn stock_limit(count: usize) -> usize {
    (count / SHARE).min(MAX_STOCK)
}

/// The counters of one cache that [`PacketPool::stats`] reads. Written only by the cache's
/// owner, so a plain load and store update them; atomics only so that another thread may
/// read them.
#[derive(Debug, Default)]
pub(crate) struct ClassCounters {
    /// Buffers in the stock.
    pub(crate) stocked: AtomicUsize,
    /// Allocations served from the stock.
    pub(crate) allocated: AtomicU64,
}

/// One cache's counters, one entry per size class of its pool.
#[derive(Debug)]
pub(crate) struct CacheCounters {
    pub(crate) classes: Box<[ClassCounters]>,
}

/// A bounded stock of free buffers of one [`PacketPool`], private to the layer that owns
/// it.
///
/// Taking a buffer from the [`PacketPool`] and giving it back costs six atomic
/// read-modify-writes: the free list's lock and unlock each way, and the pool's reference
/// count, which a buffer holds while it is out. Uncontended, that is about 15 ns per packet
/// on the 2-vCPU VM of docs/benchmarks.md, a fifth of what a whole small datagram may cost
/// if loopstack is to be twice as fast as smoltcp.
///
/// A [`PoolCache`] is owned by one layer of one stack (UDP, TCP) and used under whatever
/// exclusive access that layer already has, so its stock is a plain `Vec`: a layer that
/// consumes the packets it receives ([`recycle`](PoolCache::recycle)) and allocates the ones
/// it sends ([`alloc`](PoolCache::alloc)) moves buffers between the two with no atomic
/// operation at all. A buffer in the stock keeps its reference to the pool, so neither move
/// touches the count.
///
/// What the stock does to the pool's promises, and how they are kept:
///
/// - **Counters.** [`PacketPool::stats`] reads every live cache's counters (plain stores by
///   the owner, relaxed loads by the reader): a stocked buffer is free, not in use, and an
///   allocation served from a stock counts in [`ClassStats::allocated`] like any other.
///   Both are exact whenever no layer is allocating or freeing at that moment, as the
///   pool's own counters are. The high-water mark counts stocked buffers as in use, so it
///   stays what it was documented to be: an upper bound on the most buffers ever in use.
/// - **Exhaustion.** A stock is bounded: at most [`MAX_STOCK`] buffers and a sixteenth of
///   its class, so at most that many buffers can sit idle in one layer while another finds
///   the class empty; a class of fewer than 16 buffers (the small pools that tests
///   exhaust on purpose) is never stocked, and exhausts exactly as before.
/// - **Lifetime.** A stock lives in its layer: dropping the cache gives every stocked
///   buffer back to the free list, so nothing keeps the pool's memory alive once the stack
///   that used it is gone.
///
/// [`ClassStats::allocated`]: crate::ClassStats::allocated
///
/// ```
/// use loopstack_buf::{PacketPool, PoolCache, PoolConfig};
///
/// let pool = PacketPool::new(PoolConfig::default()).unwrap();
/// let mut cache = PoolCache::new(pool.clone());
/// let buf = cache.alloc_from_slice(b"datagram").unwrap();
/// assert_eq!(pool.stats().in_use(), 1);
/// cache.recycle(buf);                         // into the stock, not the free list
/// assert_eq!(pool.stats().in_use(), 0);       // a stocked buffer counts as free
/// let again = cache.alloc(8).unwrap();        // the same buffer, with no lock taken
/// assert_eq!(pool.stats().allocated(), 2);
/// # drop(again);
/// ```
pub struct PoolCache {
    pool: PacketPool,
    /// Free slots per class, each still holding the pool's `Arc`. Each `Vec` was given its
    /// class's limit as capacity up front, so pushing never allocates.
    #[allow(clippy::vec_box)] // a slot moves in and out as one pointer, as in the pool
    stock: Box<[Vec<Box<Slot>>]>,
    /// The most slots each class's stock may hold ([`stock_limit`]).
    limits: Box<[usize]>,
    counters: Arc<CacheCounters>,
}

impl PoolCache {
    /// An empty cache in front of `pool`. It fills as its owner recycles buffers.
    pub fn new(pool: PacketPool) -> Self {
        let limits = pool.inner().stock_limits();
        let stock = limits.iter().map(|&l| Vec::with_capacity(l)).collect();
        let counters = Arc::new(CacheCounters {
            classes: limits.iter().map(|_| ClassCounters::default()).collect(),
        });
        pool.inner().register(&counters);
        PoolCache {
            pool,
            stock,
            limits,
            counters,
        }
    }

    /// The pool this cache stocks from.
    pub fn pool(&self) -> &PacketPool {
        &self.pool
    }

    /// Like [`PacketPool::alloc`]: an empty buffer for a packet of up to `len` bytes, from
    /// the stock if it has one of the right class, otherwise from the pool.
    // Always inlined: the stock's case is a few loads and a pop, which out of line cost a
    // 64-byte datagram 15 instructions more (docs/benchmarks.md, item 34).
    #[inline(always)]
    pub fn alloc(&mut self, len: usize) -> Result<PacketBuf, PoolError> {
        let inner = self.pool.inner();
        let class = inner.class_for(len)?;
        let stock = &mut self.stock[class];
        match stock.pop() {
            Some(slot) => {
                let c = &self.counters.classes[class];
                // Only this cache writes its counters: load and store, no read-modify-write.
                c.stocked.store(stock.len(), Ordering::Relaxed);
                c.allocated
                    .store(c.allocated.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                Ok(PacketBuf::reuse(slot, inner.headroom))
            }
            // The class is known: straight to its free list, not through `alloc` again.
            None => self.pool.alloc_class(class),
        }
    }

    /// Like [`PacketPool::alloc_from_slice`]: a buffer holding a copy of `bytes`.
    #[inline]
    pub fn alloc_from_slice(&mut self, bytes: &[u8]) -> Result<PacketBuf, PoolError> {
        self.alloc(bytes.len()).map(|buf| filled(buf, bytes))
    }

    /// Takes back a packet its owner is done with: into the stock if it came from this
    /// cache's pool and its class's stock has room, otherwise dropped as usual (back to
    /// its own pool's free list).
    // Always inlined: a few loads and a push in the common case, called once per packet
    // consumed; left to the inliner it went out of line in TCP's read path when that
    // path gained a second caller (docs/benchmarks.md, item 33).
    #[inline(always)]
    pub fn recycle(&mut self, buf: PacketBuf) {
        let class = buf.class();
        let (Some(stock), Some(&limit)) = (self.stock.get_mut(class), self.limits.get(class))
        else {
            return; // from a pool with more classes: dropped
        };
        if stock.len() >= limit {
            return; // full (or a class never stocked): dropped
        }
        if let Ok(slot) = buf.into_slot_of(self.pool.inner()) {
            stock.push(slot);
            self.counters.classes[class]
                .stocked
                .store(stock.len(), Ordering::Relaxed);
        }
    }

    /// Buffers in the stock, over all classes.
    pub fn stocked(&self) -> usize {
        self.stock.iter().map(Vec::len).sum()
    }
}

impl Drop for PoolCache {
    /// Gives the stock back to the free lists, and the cache's allocation count to the
    /// pool's, so the pool's totals never go down.
    fn drop(&mut self) {
        let inner = self.pool.inner();
        for (class, stock) in self.stock.iter_mut().enumerate() {
            for slot in stock.drain(..) {
                inner.release_stocked(slot);
            }
            let c = &self.counters.classes[class];
            inner.add_allocated(class, c.allocated.swap(0, Ordering::Relaxed));
            c.stocked.store(0, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for PoolCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCache")
            .field(
                "stocked",
                &self.stock.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .finish()
    }
}
