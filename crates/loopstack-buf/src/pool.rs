//! The pool: size classes of pre-allocated buffers, each class a LIFO free list.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::buf::{PacketBuf, Slot};
use crate::cache::{stock_limit, CacheCounters};
use crate::error::{ConfigError, PoolError};

/// One size class: `count` buffers that each hold a packet of up to `capacity` bytes (the
/// pool's headroom comes on top of that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeClass {
    /// Largest packet, in bytes, a buffer of this class holds once its headroom is set aside.
    pub capacity: usize,
    /// Number of buffers of this class.
    pub count: usize,
}

/// How a [`PacketPool`] is laid out. All of its memory is allocated when the pool is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Bytes reserved in front of every packet for the headers that layers prepend.
    pub headroom: usize,
    /// Size classes, smallest first.
    pub classes: Vec<SizeClass>,
}

impl PoolConfig {
    /// Default headroom: 128 bytes.
    ///
    /// The largest header stack loopstack prepends is IPv6 (40) + a fragment header (8) + TCP
    /// with a full 40 bytes of options (60) = 108 bytes; 128 keeps a margin and a round number.
    pub const DEFAULT_HEADROOM: usize = 128;

    /// Capacity of the default small class: 1920 bytes, so that a small buffer including its
    /// headroom is exactly 2 KiB. It holds every control segment, ping, DNS-sized datagram and
    /// any packet on a 1500-byte Ethernet-sized link.
    pub const DEFAULT_SMALL_CAPACITY: usize = 2048 - Self::DEFAULT_HEADROOM;
    /// Number of small buffers by default: 2048 (4 MiB), twice the loopback ring's default 1000
    /// entries, so a full ring of small packets never starves the senders of buffers.
    pub const DEFAULT_SMALL_COUNT: usize = 2048;
    /// The largest IP packet either family can carry without jumbograms: 65575 bytes.
    ///
    /// IPv6's Payload Length is 16 bits and excludes the 40-byte fixed header (RFC 8200 3),
    /// so an IPv6 packet can be 40 + 65535 bytes; IPv4's Total Length (RFC 791 3.1) counts
    /// its header, so IPv4 stops at 65535. A reassembled datagram can be this large even
    /// though every fragment of it fits `lo`'s 65536-byte MTU.
    pub const MAX_IP_PACKET: usize = 40 + 65535;

    /// Capacity of the default large class: [`MAX_IP_PACKET`](Self::MAX_IP_PACKET) (65575)
    /// bytes, so that any packet, a full one at `lo`'s 65536-byte MTU or the largest
    /// reassembled IPv6 datagram, fits one buffer.
    pub const DEFAULT_LARGE_CAPACITY: usize = Self::MAX_IP_PACKET;
    /// Number of large buffers by default: 256 (about 16 MiB), i.e. 16 MiB of full-size
    /// packets in flight, which is above any TCP window we offer on loopback by default.
    pub const DEFAULT_LARGE_COUNT: usize = 256;

    /// Total bytes of buffer memory this configuration allocates (headroom included).
    ///
    /// The default is 2048 * 2 KiB + 256 * (65575 + 128) = 21,014,272 bytes, about 20.0 MiB.
    pub fn total_bytes(&self) -> usize {
        self.classes
            .iter()
            .map(|c| {
                c.count
                    .saturating_mul(c.capacity.saturating_add(self.headroom))
            })
            .fold(0usize, usize::saturating_add)
    }

    /// A pool with one class, handy for tests that want to exhaust it quickly.
    pub fn single(capacity: usize, count: usize) -> Self {
        PoolConfig {
            headroom: Self::DEFAULT_HEADROOM,
            classes: vec![SizeClass { capacity, count }],
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.classes.is_empty() {
            return Err(ConfigError::NoClasses);
        }
        for (index, c) in self.classes.iter().enumerate() {
            if c.capacity == 0 || c.count == 0 {
                return Err(ConfigError::EmptyClass {
                    index,
                    capacity: c.capacity,
                    count: c.count,
                });
            }
            c.capacity
                .checked_add(self.headroom)
                .and_then(|b| b.checked_mul(c.count))
                .ok_or(ConfigError::TooBig)?;
        }
        for w in self.classes.windows(2) {
            if w[1].capacity <= w[0].capacity {
                return Err(ConfigError::UnorderedClasses {
                    previous: w[0].capacity,
                    next: w[1].capacity,
                });
            }
        }
        Ok(())
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            headroom: Self::DEFAULT_HEADROOM,
            classes: vec![
                SizeClass {
                    capacity: Self::DEFAULT_SMALL_CAPACITY,
                    count: Self::DEFAULT_SMALL_COUNT,
                },
                SizeClass {
                    capacity: Self::DEFAULT_LARGE_CAPACITY,
                    count: Self::DEFAULT_LARGE_COUNT,
                },
            ],
        }
    }
}

/// The free list of one class and its counters, all behind one lock so that a counter update
/// costs nothing beyond the lock that the free list needs anyway.
#[derive(Debug)]
struct FreeList {
    /// Free buffers. Used as a stack (LIFO): the buffer freed last is the one handed out next,
    /// and it is the one most likely to still be in the CPU cache. Its capacity is reserved
    /// for every buffer of the class up front, so pushing never reallocates.
    // Boxed on purpose: the box is what a `PacketBuf` owns while the buffer is out, so taking
    // and releasing a buffer moves one pointer, not the slot's fields.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Slot>>,
    high_water: usize,
    exhausted: u64,
    allocated: u64,
}

/// One size class.
///
/// The free list sits behind `std::sync::Mutex`, not `parking_lot`'s: both are a single
/// atomic operation when uncontended, but parking_lot allocates per-thread bookkeeping the
/// first time a thread ever waits, and this pool promises that the packet path never
/// touches the heap. The futex-based std mutex never allocates.
#[derive(Debug)]
pub(crate) struct Class {
    capacity: usize,
    count: usize,
    list: Mutex<FreeList>,
}

impl Class {
    /// Locks the free list. The critical sections cannot panic (a pop, a push into reserved
    /// capacity, counter updates), so a poisoned lock still guards consistent data.
    fn lock(&self) -> MutexGuard<'_, FreeList> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) headroom: usize,
    classes: Box<[Class]>,
    /// The counters of every [`PoolCache`](crate::PoolCache) in front of this pool, which
    /// [`PacketPool::stats`] adds in. A dead entry is pruned when the next cache registers.
    caches: Mutex<Vec<Weak<CacheCounters>>>,
}

impl Inner {
    /// Gives a buffer's storage back to its class. Called from `PacketBuf::drop`, on whatever
    /// thread the last owner of the packet runs.
    pub(crate) fn release(&self, slot: Box<Slot>) {
        let mut list = self.classes[slot.class()].lock();
        debug_assert!(list.free.len() < self.classes[slot.class()].count);
        list.free.push(slot);
    }

    pub(crate) fn take(&self, class: usize) -> Result<Box<Slot>, PoolError> {
        let c = &self.classes[class];
        let mut list = c.lock();
        match list.free.pop() {
            Some(storage) => {
                list.allocated += 1;
                let in_use = c.count - list.free.len();
                if in_use > list.high_water {
                    list.high_water = in_use;
                }
                Ok(storage)
            }
            None => {
                list.exhausted += 1;
                Err(PoolError::Exhausted {
                    capacity: c.capacity,
                    count: c.count,
                })
            }
        }
    }

    /// How many free buffers a cache may stock of each class.
    pub(crate) fn stock_limits(&self) -> Box<[usize]> {
        self.classes.iter().map(|c| stock_limit(c.count)).collect()
    }

    /// Lists a new cache's counters for [`PacketPool::stats`].
    pub(crate) fn register(&self, counters: &Arc<CacheCounters>) {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|c| c.strong_count() > 0);
        caches.push(Arc::downgrade(counters));
    }

    /// Gives a stocked slot (one that still holds its pool) back to its free list.
    pub(crate) fn release_stocked(&self, mut slot: Box<Slot>) {
        // The slot's reference to the pool is dropped after the push; `self` is that
        // pool, kept alive by the cache's own handle meanwhile.
        let pool = slot.take_pool();
        self.release(slot);
        drop(pool);
    }

    /// Adds allocations a cache served to a class's count (when the cache goes).
    pub(crate) fn add_allocated(&self, class: usize, n: u64) {
        if let Some(c) = self.classes.get(class) {
            c.lock().allocated += n;
        }
    }

    #[inline]
    pub(crate) fn class_for(&self, len: usize) -> Result<usize, PoolError> {
        // The first class takes nearly every packet asked for (headers, small messages):
        // answered before the scan, whose set-up cost a small packet's allocation 10 to 20
        // instructions (docs/benchmarks.md, item 40).
        if self.classes.first().is_some_and(|c| len <= c.capacity) {
            return Ok(0);
        }
        // A handful of classes at most: a linear scan beats anything clever.
        self.classes
            .iter()
            .position(|c| c.capacity >= len)
            .ok_or(PoolError::TooLarge {
                requested: len,
                largest: self.classes.last().map_or(0, |c| c.capacity),
            })
    }
}

/// A bounded pool of pre-allocated packet buffers, shared by every layer and every thread.
///
/// Cloning the pool clones a handle (an `Arc`); all clones hand out buffers from the same
/// memory. Buffers keep the pool's memory alive, so they may outlive every pool handle.
#[derive(Debug, Clone)]
pub struct PacketPool {
    inner: Arc<Inner>,
}

impl PacketPool {
    /// Builds a pool and allocates all of its memory now, so that no packet ever allocates.
    pub fn new(config: PoolConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let classes = config
            .classes
            .iter()
            .enumerate()
            .map(|(class, c)| {
                let size = c.capacity + config.headroom;
                let mut free = Vec::with_capacity(c.count);
                free.extend((0..c.count).map(|_| Slot::new(class, size)));
                Class {
                    capacity: c.capacity,
                    count: c.count,
                    list: Mutex::new(FreeList {
                        free,
                        high_water: 0,
                        exhausted: 0,
                        allocated: 0,
                    }),
                }
            })
            .collect();
        Ok(PacketPool {
            inner: Arc::new(Inner {
                headroom: config.headroom,
                classes,
                caches: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A buffer able to hold a packet of up to `len` bytes, empty, with the pool's headroom
    /// in front of it. The smallest class that fits is used; if that class is exhausted the
    /// call fails rather than borrowing a larger buffer, so that floods of small packets can
    /// never starve full-size ones.
    pub fn alloc(&self, len: usize) -> Result<PacketBuf, PoolError> {
        self.alloc_class(self.inner.class_for(len)?)
    }

    /// An empty buffer of size class `class`, from the free list.
    pub(crate) fn alloc_class(&self, class: usize) -> Result<PacketBuf, PoolError> {
        let slot = self.inner.take(class)?;
        Ok(PacketBuf::new(Arc::clone(&self.inner), slot))
    }

    /// A buffer holding a copy of `bytes`: the one copy in that a packet's life starts with.
    pub fn alloc_from_slice(&self, bytes: &[u8]) -> Result<PacketBuf, PoolError> {
        self.alloc(bytes.len()).map(|buf| filled(buf, bytes))
    }

    /// Headroom every buffer starts with.
    pub fn headroom(&self) -> usize {
        self.inner.headroom
    }

    /// Largest packet any buffer of this pool holds.
    pub fn max_packet(&self) -> usize {
        self.inner.classes.last().map_or(0, |c| c.capacity)
    }

    /// A snapshot of the counters. Takes each class's lock briefly; not for the hot path.
    ///
    /// Buffers stocked by a [`PoolCache`](crate::PoolCache) count as free, and the
    /// allocations it served as allocations; both are exact whenever no buffer is being
    /// allocated or freed at the same moment.
    pub fn stats(&self) -> PoolStats {
        let caches: Vec<Arc<CacheCounters>> = self
            .inner
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        PoolStats {
            headroom: self.inner.headroom,
            classes: self
                .inner
                .classes
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (stocked, cache_allocated) = caches
                        .iter()
                        .filter_map(|k| k.classes.get(i))
                        .fold((0, 0), |(s, a), k| {
                            (
                                s + k.stocked.load(Ordering::Relaxed),
                                a + k.allocated.load(Ordering::Relaxed),
                            )
                        });
                    let list = c.lock();
                    ClassStats {
                        capacity: c.capacity,
                        count: c.count,
                        // Saturating: a cache may move a buffer while this reads.
                        in_use: c.count.saturating_sub(list.free.len() + stocked),
                        stocked,
                        high_water: list.high_water,
                        exhausted: list.exhausted,
                        allocated: list.allocated + cache_allocated,
                    }
                })
                .collect(),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        PacketPool { inner }
    }
}

/// `buf`, just allocated for `bytes.len()` bytes, with `bytes` copied in.
pub(crate) fn filled(mut buf: PacketBuf, bytes: &[u8]) -> PacketBuf {
    buf.extend_from_slice(bytes)
        .expect("the class was chosen to fit these bytes");
    buf
}

/// Counters of one size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassStats {
    /// Packet capacity of the class.
    pub capacity: usize,
    /// Buffers in the class.
    pub count: usize,
    /// Buffers currently handed out (a buffer stocked by a
    /// [`PoolCache`](crate::PoolCache) is not: it is free, only not on the shared list).
    pub in_use: usize,
    /// Free buffers held in [`PoolCache`](crate::PoolCache) stocks.
    pub stocked: usize,
    /// The most buffers ever handed out at once, counting those in caches' stocks as
    /// handed out: an upper bound on the most ever in use.
    pub high_water: usize,
    /// Allocations refused because the class was empty.
    pub exhausted: u64,
    /// Successful allocations since the pool was built.
    pub allocated: u64,
}

/// A snapshot of a pool's counters, per class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Headroom of every buffer.
    pub headroom: usize,
    /// One entry per size class, smallest first.
    pub classes: Vec<ClassStats>,
}

impl PoolStats {
    /// Buffers in use, over all classes.
    pub fn in_use(&self) -> usize {
        self.classes.iter().map(|c| c.in_use).sum()
    }

    /// Exhaustion events, over all classes.
    pub fn exhausted(&self) -> u64 {
        self.classes.iter().map(|c| c.exhausted).sum()
    }

    /// Successful allocations, over all classes.
    pub fn allocated(&self) -> u64 {
        self.classes.iter().map(|c| c.allocated).sum()
    }

    /// Sum of the classes' high-water marks: an upper bound on the most buffers ever in use.
    pub fn high_water(&self) -> usize {
        self.classes.iter().map(|c| c.high_water).sum()
    }

    /// Bytes of buffer memory the pool holds, headroom included.
    pub fn total_bytes(&self) -> usize {
        self.classes
            .iter()
            .map(|c| c.count * (c.capacity + self.headroom))
            .sum()
    }
}

impl std::fmt::Display for PoolStats {
    /// One line per class, e.g. `pool class 1920B: 3/2048 in use, high water 5, ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.classes.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "pool class {:>5}B: {}/{} in use, high water {}, {} allocations, {} exhausted",
                c.capacity, c.in_use, c.count, c.high_water, c.allocated, c.exhausted
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_pool() -> PacketPool {
        PacketPool::new(PoolConfig {
            headroom: 16,
            classes: vec![
                SizeClass {
                    capacity: 64,
                    count: 2,
                },
                SizeClass {
                    capacity: 1024,
                    count: 1,
                },
            ],
        })
        .unwrap()
    }

    #[test]
    fn default_footprint_is_documented_value() {
        let c = PoolConfig::default();
        assert_eq!(c.total_bytes(), 2048 * 2048 + 256 * (65575 + 128));
        assert_eq!(c.total_bytes(), 21_014_272);
        let pool = PacketPool::new(c.clone()).unwrap();
        assert_eq!(pool.stats().total_bytes(), c.total_bytes());
        // A full loopback packet at the default MTU fits one buffer.
        let b = pool.alloc(65536).unwrap();
        assert!(b.capacity() >= 65536 + PoolConfig::DEFAULT_HEADROOM);
        // So does the largest IPv6 packet: 40 bytes of header + a 65535-byte payload.
        assert_eq!(pool.max_packet(), 65575);
        let b = pool.alloc(40 + 65535).unwrap();
        assert_eq!(b.capacity(), 65575 + PoolConfig::DEFAULT_HEADROOM);
        assert!(pool.alloc(65576).is_err());
    }

    #[test]
    fn smallest_fitting_class_is_chosen() {
        let pool = small_pool();
        let a = pool.alloc(10).unwrap();
        assert_eq!(a.capacity(), 64 + 16);
        let b = pool.alloc(65).unwrap();
        assert_eq!(b.capacity(), 1024 + 16);
        assert_eq!(a.headroom(), 16);
        assert_eq!(b.tailroom(), 1024);
    }

    #[test]
    fn exhaustion_is_an_error_and_is_counted() {
        let pool = small_pool();
        let a = pool.alloc(1).unwrap();
        let b = pool.alloc(1).unwrap();
        assert_eq!(
            pool.alloc(1).unwrap_err(),
            PoolError::Exhausted {
                capacity: 64,
                count: 2
            }
        );
        // The small class does not borrow from the large one.
        let s = pool.stats();
        assert_eq!(s.classes[0].exhausted, 1);
        assert_eq!(s.classes[0].in_use, 2);
        assert_eq!(s.classes[1].in_use, 0);
        drop(a);
        let c = pool.alloc(1).unwrap();
        drop((b, c));
        let s = pool.stats();
        assert_eq!(s.in_use(), 0);
        assert_eq!(s.classes[0].high_water, 2);
        assert_eq!(s.classes[0].allocated, 3);
    }

    #[test]
    fn too_large_is_an_error() {
        let pool = small_pool();
        assert_eq!(
            pool.alloc(1025).unwrap_err(),
            PoolError::TooLarge {
                requested: 1025,
                largest: 1024
            }
        );
        assert_eq!(pool.stats().exhausted(), 0);
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert_eq!(
            PacketPool::new(PoolConfig {
                headroom: 0,
                classes: vec![]
            })
            .unwrap_err(),
            ConfigError::NoClasses
        );
        let unordered = PoolConfig {
            headroom: 0,
            classes: vec![
                SizeClass {
                    capacity: 100,
                    count: 1,
                },
                SizeClass {
                    capacity: 100,
                    count: 1,
                },
            ],
        };
        assert!(matches!(
            PacketPool::new(unordered),
            Err(ConfigError::UnorderedClasses { .. })
        ));
        assert!(matches!(
            PacketPool::new(PoolConfig::single(10, 0)),
            Err(ConfigError::EmptyClass { index: 0, .. })
        ));
        assert_eq!(
            PacketPool::new(PoolConfig {
                headroom: usize::MAX,
                classes: vec![SizeClass {
                    capacity: 1,
                    count: 1
                }]
            })
            .unwrap_err(),
            ConfigError::TooBig
        );
    }

    #[test]
    fn buffers_outlive_the_pool_handle() {
        let pool = small_pool();
        let buf = pool.alloc_from_slice(b"still here").unwrap();
        drop(pool);
        assert_eq!(buf.as_slice(), b"still here");
        let pool_again = buf.pool();
        assert_eq!(pool_again.stats().in_use(), 1);
        drop(buf);
        assert_eq!(pool_again.stats().in_use(), 0);
    }

    #[test]
    fn freed_on_another_thread() {
        let pool = small_pool();
        let buf = pool.alloc_from_slice(b"x").unwrap();
        std::thread::spawn(move || drop(buf)).join().unwrap();
        assert_eq!(pool.stats().in_use(), 0);
    }
}
