//! `PoolCache`: a layer's stock of free buffers, and what the pool's counters say about it.

use std::sync::Arc;

use loopstack_buf::{PacketPool, PoolCache, PoolConfig, SizeClass, MAX_STOCK};

/// A pool whose small class is large enough to be stocked fully (16 * 32 buffers) and
/// whose large class (32 buffers) is stocked by 2.
fn pool() -> PacketPool {
    PacketPool::new(PoolConfig {
        headroom: 32,
        classes: vec![
            SizeClass {
                capacity: 128,
                count: 16 * MAX_STOCK,
            },
            SizeClass {
                capacity: 4096,
                count: 32,
            },
        ],
    })
    .unwrap()
}

#[test]
fn a_recycled_buffer_is_handed_out_again_and_counts_as_free_meanwhile() {
    let pool = pool();
    let mut cache = PoolCache::new(pool.clone());
    let buf = cache.alloc_from_slice(b"first").unwrap();
    let storage = buf.as_slice().as_ptr();
    assert_eq!(pool.stats().in_use(), 1);
    cache.recycle(buf);
    let s = pool.stats();
    assert_eq!((s.in_use(), s.classes[0].stocked, s.allocated()), (0, 1, 1));
    assert_eq!(cache.stocked(), 1);
    // Served from the stock: the same memory, counted as an allocation, in use again.
    let again = cache.alloc_from_slice(b"again").unwrap();
    assert_eq!(again.as_slice().as_ptr(), storage);
    let s = pool.stats();
    assert_eq!((s.in_use(), s.classes[0].stocked, s.allocated()), (1, 0, 2));
    drop(again);
    assert_eq!(pool.stats().in_use(), 0);
}

#[test]
fn a_reused_buffer_starts_clean() {
    let pool = pool();
    let mut cache = PoolCache::new(pool.clone());
    let mut buf = cache.alloc(64).unwrap();
    buf.extend_from_slice(&[0xEE; 64]).unwrap();
    buf.prepend_slice(&[0xDD; 16]).unwrap();
    let block: Arc<[u8]> = Arc::from(vec![7u8; 100]);
    buf.attach(&block, 0..100).unwrap();
    cache.recycle(buf);
    // The stock dropped the fragment: the sender's block is not kept alive by a free slot.
    assert_eq!(Arc::strong_count(&block), 1);
    let mut buf = cache.alloc(64).unwrap();
    assert_eq!(buf.len(), 0);
    assert!(buf.is_linear());
    assert_eq!(buf.headroom(), pool.headroom());
    // Bytes exposed by a prepend are zeroed, as with a buffer from the free list: nothing
    // of the previous packet shows through.
    assert_eq!(buf.prepend(16).unwrap(), &[0u8; 16]);
}

#[test]
fn the_stock_is_bounded_and_the_surplus_goes_back_to_the_free_list() {
    let pool = pool();
    let mut cache = PoolCache::new(pool.clone());
    let bufs: Vec<_> = (0..MAX_STOCK + 8)
        .map(|_| pool.alloc(10).unwrap())
        .collect();
    for b in bufs {
        cache.recycle(b);
    }
    let s = pool.stats();
    assert_eq!(s.classes[0].stocked, MAX_STOCK);
    assert_eq!(s.in_use(), 0);
    // The large class of 32 buffers is stocked by 32 / 16 = 2 at most.
    let large: Vec<_> = (0..5).map(|_| pool.alloc(4000).unwrap()).collect();
    for b in large {
        cache.recycle(b);
    }
    let s = pool.stats();
    assert_eq!((s.classes[1].stocked, s.classes[1].in_use), (2, 0));
    assert_eq!(cache.stocked(), MAX_STOCK + 2);
}

#[test]
fn small_classes_are_never_stocked_so_they_exhaust_as_before() {
    let pool = PacketPool::new(PoolConfig::single(64, 15)).unwrap();
    let mut cache = PoolCache::new(pool.clone());
    let bufs: Vec<_> = (0..15).map(|_| cache.alloc(1).unwrap()).collect();
    assert!(cache.alloc(1).is_err(), "15 buffers, 15 out");
    for b in bufs {
        cache.recycle(b);
    }
    assert_eq!(cache.stocked(), 0);
    let s = pool.stats();
    assert_eq!((s.in_use(), s.exhausted(), s.allocated()), (0, 1, 15));
    // All 15 are on the shared free list again, for anyone.
    let other = pool.clone();
    let all: Vec<_> = (0..15).map(|_| other.alloc(1).unwrap()).collect();
    assert_eq!(all.len(), 15);
}

#[test]
fn a_buffer_of_another_pool_goes_home() {
    let (mine, theirs) = (pool(), pool());
    let mut cache = PoolCache::new(mine.clone());
    let foreign = theirs.alloc_from_slice(b"not yours").unwrap();
    cache.recycle(foreign);
    assert_eq!(cache.stocked(), 0);
    assert_eq!(theirs.stats().in_use(), 0);
    assert_eq!(mine.stats().classes[0].stocked, 0);
}

#[test]
fn dropping_the_cache_returns_its_stock_and_keeps_the_counts() {
    let pool = pool();
    let mut cache = PoolCache::new(pool.clone());
    for _ in 0..3 {
        let b = cache.alloc(10).unwrap();
        cache.recycle(b);
    }
    let before = pool.stats();
    assert_eq!(
        (
            before.allocated(),
            before.classes[0].stocked,
            before.in_use()
        ),
        (3, 1, 0)
    );
    drop(cache);
    let after = pool.stats();
    assert_eq!(
        (after.allocated(), after.classes[0].stocked, after.in_use()),
        (3, 0, 0)
    );
    // Every buffer is on the free list: the whole class can be taken.
    let all: Vec<_> = (0..16 * MAX_STOCK)
        .map(|_| pool.alloc(1).unwrap())
        .collect();
    assert!(pool.alloc(1).is_err());
    drop(all);
}

#[test]
fn two_caches_are_both_counted() {
    let pool = pool();
    let (mut a, mut b) = (PoolCache::new(pool.clone()), PoolCache::new(pool.clone()));
    let (x, y, z) = (
        a.alloc(1).unwrap(),
        b.alloc(1).unwrap(),
        b.alloc(1).unwrap(),
    );
    a.recycle(x);
    b.recycle(y);
    b.recycle(z);
    let s = pool.stats();
    assert_eq!((s.classes[0].stocked, s.in_use(), s.allocated()), (3, 0, 3));
    let _w = a.alloc(1).unwrap();
    let s = pool.stats();
    assert_eq!((s.classes[0].stocked, s.in_use(), s.allocated()), (2, 1, 4));
    // The high-water mark is an upper bound: it counted the stocked buffers as out.
    assert!(s.high_water() >= 3);
}

#[test]
fn a_cache_may_be_moved_to_another_thread() {
    let pool = pool();
    let mut cache = PoolCache::new(pool.clone());
    let b = cache.alloc(1).unwrap();
    cache.recycle(b);
    let cache = std::thread::spawn(move || {
        let b = cache.alloc(1).unwrap();
        cache.recycle(b);
        cache
    })
    .join()
    .unwrap();
    assert_eq!(cache.stocked(), 1);
    assert_eq!(pool.stats().allocated(), 2);
}
