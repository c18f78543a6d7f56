//! A small direct-mapped cache in front of a demultiplexing map, for the receive path.
//!
//! UDP finds a datagram's socket, and TCP a segment's connection, in a `BTreeMap`; a search
//! there compares keys down the tree, about 60 instructions per packet, where most packets
//! belong to the few sockets used just before (Linux's early demux keeps the socket for the
//! same reason). A way of this cache, picked by a hash of the ports, holds the key of a
//! packet received lately and the slot it went to; a hit is one key comparison. Whoever
//! owns the map empties the cache whenever the map changes, so the two never disagree; what
//! the cache holds depends only on the calls made, never on a hash seed.

/// `WAYS` entries, each a key and the slot index it maps to. `WAYS` is a power of two, so
/// that a hash picks its way with a mask.
#[derive(Debug, Clone)]
pub(crate) struct DemuxCache<K, const WAYS: usize> {
    ways: [Option<(K, u32)>; WAYS],
}

impl<K: Copy + Eq, const WAYS: usize> DemuxCache<K, WAYS> {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        DemuxCache { ways: [None; WAYS] }
    }

    /// The slot cached for `key`, whose way `hash` picks. Compared where it lies: copying
    /// the entry out first moved the key per packet for nothing.
    #[inline(always)]
    pub(crate) fn get(&self, hash: usize, key: &K) -> Option<u32> {
        match &self.ways[hash % WAYS] {
            Some((k, index)) if k == key => Some(*index),
            _ => None,
        }
    }

    /// Remembers that `key` (whose way `hash` picks) maps to `index`, in place of whatever
    /// that way held.
    #[inline(always)]
    pub(crate) fn put(&mut self, hash: usize, key: K, index: u32) {
        self.ways[hash % WAYS] = Some((key, index));
    }

    /// Forgets everything: the map behind the cache changed.
    pub(crate) fn clear(&mut self) {
        self.ways = [None; WAYS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_way_holds_the_last_key_put_and_clear_forgets_all() {
        let mut c: DemuxCache<u64, 4> = DemuxCache::new();
        assert_eq!(c.get(1, &10), None);
        c.put(1, 10, 7);
        assert_eq!(c.get(1, &10), Some(7));
        assert_eq!(c.get(5, &10), Some(7), "hashes are taken modulo the ways");
        assert_eq!(c.get(1, &11), None, "another key in the same way misses");
        c.put(5, 11, 8);
        assert_eq!((c.get(1, &10), c.get(1, &11)), (None, Some(8)), "replaced");
        c.put(2, 12, 9);
        c.clear();
        assert_eq!((c.get(1, &11), c.get(2, &12)), (None, None));
    }
}
