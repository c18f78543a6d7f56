//! The out-of-order queue: segments that arrived ahead of a gap, kept until the gap fills.
//!
//! The receiver expects the byte numbered RCV.NXT next. When a segment is lost, the ones
//! after it still arrive, carrying bytes beyond RCV.NXT. RFC 9293 3.10.7.4 allows them to be
//! kept: "segments with higher beginning sequence numbers ... may be held for later
//! processing". Keeping them is what makes one lost segment cost one retransmission rather
//! than a whole window of them (and what SACK, RFC 2018, later reports to the sender).
//!
//! ```text
//!          RCV.NXT                                              RCV.NXT + RCV.WND
//!   ...read |  gap (lost)  | held | gap | held  held |               |
//!                           '------ OutOfOrder -----'
//! ```
//!
//! When the retransmission fills the gap, the connection advances RCV.NXT and calls
//! [`pop_ready`](OutOfOrder::pop_ready) until it returns `None`, moving every segment that
//! has become in order to the receive queue.
//!
//! Two rules keep the queue simple and safe:
//!
//! * The segments held never overlap. A segment that overlaps held ones keeps the bytes
//!   already held: its front is trimmed against its predecessor and its tail against its
//!   successor, and held segments it wholly covers are replaced by it. That is always
//!   enough: once trimmed in front, the new segment starts in a gap; the held segments that
//!   start inside it either end inside it (covered, replaced) or end past it (the first such
//!   one cuts its tail, and no later one can reach back into it). So a segment is never
//!   split in two and no new byte is thrown away. A segment that adds no new byte is a
//!   duplicate and is dropped.
//! * The queue is bounded by a number of segments, because each one pins a packet buffer.
//!   A peer that sprays tiny segments with gaps between them must not drain the pool. When
//!   the queue is full, the highest segment gives way to a lower one (lower bytes are needed
//!   sooner), and a segment above all held ones is dropped; either way the peer
//!   retransmits what was dropped.
//!
//! Sequence numbers are compared modulo 2^32 (see [`SeqNum`]): the queue relies on every
//! segment it holds lying within 2^31 bytes of the others, which a receive window (at most
//! 2^30 bytes, RFC 7323 2.3) guarantees if the caller only inserts segments inside it.

use std::collections::VecDeque;
use std::fmt;

use loopstack_buf::PacketBuf;

use super::SeqNum;

/// What [`OutOfOrder::insert`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Held (possibly trimmed to the bytes not already held, possibly replacing held
    /// segments it covers, possibly after evicting the highest held segment).
    Queued,
    /// Dropped: every byte of it is already held (or it was empty).
    Duplicate,
    /// Dropped: the queue is full and the segment lies above every held one.
    Full,
}

/// One held segment: its payload and the sequence number of its first byte.
struct Segment {
    seq: SeqNum,
    buf: PacketBuf,
}

/// A payload's length as a sequence-space distance. A packet buffer holds at most 64 KiB,
/// far below 2^32.
fn seq_len(buf: &PacketBuf) -> u32 {
    u32::try_from(buf.len()).unwrap_or(u32::MAX)
}

impl Segment {
    /// The sequence number just past the segment's last byte.
    fn end(&self) -> SeqNum {
        self.seq + seq_len(&self.buf)
    }
}

/// The bounded out-of-order queue of one connection: segments sorted by sequence number,
/// never overlapping, at most `max_segments` of them.
pub struct OutOfOrder {
    /// The held segments, lowest first. Its capacity is `max_segments`, reserved in `new`,
    /// so inserting never allocates.
    segs: VecDeque<Segment>,
    /// The most segments held at once.
    max_segments: usize,
    /// Payload bytes held: the sum of the segments' lengths.
    bytes: usize,
}

impl OutOfOrder {
    /// An empty queue holding at most `max_segments` segments. Room for that many entries
    /// (a few dozen bytes each; the payloads stay in their packet buffers) is allocated now.
    pub fn new(max_segments: usize) -> Self {
        OutOfOrder {
            segs: VecDeque::with_capacity(max_segments),
            max_segments,
            bytes: 0,
        }
    }

    /// Holds the segment whose first byte is numbered `seq`, keeping the queue sorted and
    /// free of overlaps (see the module documentation for the rules).
    ///
    /// The caller inserts only segments beyond RCV.NXT and within the receive window.
    pub fn insert(&mut self, seq: SeqNum, mut payload: PacketBuf) -> Insert {
        if payload.is_empty() {
            return Insert::Duplicate;
        }
        let mut start = seq;
        let end = seq + seq_len(&payload);

        // `p`: the first held segment starting at or after `seq`. The one before it, if any,
        // starts before `seq` and may overlap our front.
        let p = self.segs.partition_point(|s| s.seq.lt(seq));
        if let Some(pred) = p.checked_sub(1).and_then(|i| self.segs.get(i)) {
            let pred_end = pred.end();
            if pred_end.ge(end) {
                return Insert::Duplicate;
            }
            if pred_end.gt(start) {
                // Keep the held bytes: drop our copy of them. pred_end - start < len.
                let trimmed = payload.strip_front((pred_end - start) as usize);
                debug_assert!(trimmed.is_ok());
                start = pred_end;
            }
        }

        // Held segments starting inside [start, end): those ending inside it are covered
        // (`p..q`, to be replaced); the first one ending past it cuts our tail, and no later
        // one can overlap us.
        let mut q = p;
        let mut covered = 0;
        while let Some(next) = self.segs.get(q) {
            if next.seq.ge(end) {
                break;
            }
            if next.end().le(end) {
                covered += next.buf.len();
                q += 1;
            } else {
                payload.truncate((next.seq - start) as usize);
                break;
            }
        }
        if payload.len() == covered {
            // Every byte left is already held: an exact duplicate, or one that only spans
            // held segments back to back.
            return Insert::Duplicate;
        }

        if self.segs.len() - (q - p) >= self.max_segments {
            // Full, and replacing nothing (q == p: a full queue with covered segments would
            // have room after removing them).
            if p == self.segs.len() {
                return Insert::Full;
            }
            // We go below the highest held segment: evict it, since lower bytes are needed
            // sooner. The peer will send it again. (It lies at or past index q, so the range
            // p..q below stays valid.)
            if let Some(evicted) = self.segs.pop_back() {
                self.bytes -= evicted.buf.len();
            }
        }

        self.bytes -= covered;
        self.bytes += payload.len();
        self.segs.drain(p..q);
        self.segs.insert(
            p,
            Segment {
                seq: start,
                buf: payload,
            },
        );
        Insert::Queued
    }

    /// The next segment to deliver once RCV.NXT is `rcv_nxt`: the lowest held segment if it
    /// starts at or before `rcv_nxt` and extends past it, with its already-received front
    /// stripped, so that it starts exactly at `rcv_nxt`. Segments wholly before `rcv_nxt`
    /// (received meanwhile in some other segment) are dropped on the way. `None` if the
    /// lowest segment starts beyond `rcv_nxt`, i.e. a gap remains, or nothing is held.
    pub fn pop_ready(&mut self, rcv_nxt: SeqNum) -> Option<PacketBuf> {
        loop {
            if self.segs.front()?.seq.gt(rcv_nxt) {
                return None;
            }
            let seg = self.segs.pop_front()?;
            self.bytes -= seg.buf.len();
            if seg.end().le(rcv_nxt) {
                continue; // stale: every byte of it was received already
            }
            let Segment { seq, mut buf } = seg;
            // rcv_nxt - seq < len, since seq <= rcv_nxt < end.
            let stripped = buf.strip_front((rcv_nxt - seq) as usize);
            debug_assert!(stripped.is_ok());
            return Some(buf);
        }
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The sequence number of the lowest byte held.
    pub fn first_seq(&self) -> Option<SeqNum> {
        self.segs.front().map(|s| s.seq)
    }

    /// The sequence number just past the highest byte held.
    pub fn last_end(&self) -> Option<SeqNum> {
        self.segs.back().map(Segment::end)
    }

    /// Drops every held segment, returning the buffers to their pool.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.bytes = 0;
    }
}

impl fmt::Debug for OutOfOrder {
    /// Shows the held ranges (`seq..end`), not the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Ranges<'a>(&'a VecDeque<Segment>);
        impl fmt::Debug for Ranges<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|s| s.seq.0..s.end().0))
                    .finish()
            }
        }
        f.debug_struct("OutOfOrder")
            .field("max_segments", &self.max_segments)
            .field("bytes", &self.bytes)
            .field("segments", &Ranges(&self.segs))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_buf::{PacketPool, PoolConfig};

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig::single(2048, 64)).unwrap()
    }

    /// The byte the stream carries at sequence number `seq`.
    fn byte_at(seq: SeqNum) -> u8 {
        (seq.0 % 251) as u8
    }

    /// A segment carrying the stream's bytes `seq..seq + len`.
    fn seg(pool: &PacketPool, seq: SeqNum, len: u32) -> PacketBuf {
        let mut b = pool.alloc(len as usize).unwrap();
        for i in 0..len {
            b.extend_from_slice(&[byte_at(seq + i)]).unwrap();
        }
        b
    }

    /// A segment of `len` copies of `fill`, to tell whose bytes were kept.
    fn filled(pool: &PacketPool, len: usize, fill: u8) -> PacketBuf {
        pool.alloc_from_slice(&vec![fill; len]).unwrap()
    }

    /// The held ranges, relative to `base`.
    fn ranges(q: &OutOfOrder, base: SeqNum) -> Vec<(u32, u32)> {
        q.segs
            .iter()
            .map(|s| (s.seq - base, s.end() - base))
            .collect()
    }

    /// Sorted, non-overlapping, within bound, bytes counted right.
    fn check_invariants(q: &OutOfOrder) {
        assert!(q.segs.len() <= q.max_segments);
        assert!(q.segs.iter().all(|s| !s.buf.is_empty()));
        for w in q.segs.iter().zip(q.segs.iter().skip(1)) {
            assert!(w.0.end().le(w.1.seq), "{q:?}");
        }
        assert_eq!(q.bytes, q.segs.iter().map(|s| s.buf.len()).sum::<usize>());
    }

    /// Insert rules and pop_ready, tried at several bases, including across 2^32.
    const BASES: [u32; 4] = [0, 1_000_000, u32::MAX - 25, 0x7fff_fff0];

    #[test]
    fn sorted_insertion_out_of_order() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            assert_eq!(q.insert(base + 40, seg(&p, base + 40, 10)), Insert::Queued);
            assert_eq!(q.insert(base + 10, seg(&p, base + 10, 10)), Insert::Queued);
            assert_eq!(q.insert(base + 25, seg(&p, base + 25, 5)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(10, 20), (25, 30), (40, 50)]);
            assert_eq!((q.len(), q.bytes()), (3, 25));
            assert_eq!(q.first_seq(), Some(base + 10));
            assert_eq!(q.last_end(), Some(base + 50));
            check_invariants(&q);
        }
    }

    #[test]
    fn duplicates_are_dropped() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            q.insert(base + 10, seg(&p, base + 10, 10));
            q.insert(base + 20, seg(&p, base + 20, 10));
            // Exact duplicate.
            assert_eq!(
                q.insert(base + 10, seg(&p, base + 10, 10)),
                Insert::Duplicate
            );
            // Inside one held segment.
            assert_eq!(
                q.insert(base + 12, seg(&p, base + 12, 5)),
                Insert::Duplicate
            );
            // Ending exactly where the held one ends.
            assert_eq!(
                q.insert(base + 15, seg(&p, base + 15, 5)),
                Insert::Duplicate
            );
            // Spanning two adjacent held segments.
            assert_eq!(
                q.insert(base + 15, seg(&p, base + 15, 10)),
                Insert::Duplicate
            );
            assert_eq!(
                q.insert(base + 10, seg(&p, base + 10, 20)),
                Insert::Duplicate
            );
            // Empty.
            assert_eq!(q.insert(base + 5, p.alloc(0).unwrap()), Insert::Duplicate);
            assert_eq!(ranges(&q, base), [(10, 20), (20, 30)]);
            check_invariants(&q);
        }
        // Every dropped duplicate went back to the pool.
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn front_overlap_keeps_the_held_bytes() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            q.insert(base + 10, filled(&p, 10, 0xAA)); // 10..20
            assert_eq!(q.insert(base + 15, filled(&p, 10, 0xBB)), Insert::Queued); // 15..25
            assert_eq!(ranges(&q, base), [(10, 20), (20, 25)]);
            let first = q.pop_ready(base + 10).unwrap();
            assert_eq!(first.as_slice(), [0xAA; 10]);
            let second = q.pop_ready(base + 20).unwrap();
            assert_eq!(second.as_slice(), [0xBB; 5]);
            assert!(q.is_empty());
        }
    }

    #[test]
    fn tail_overlap_keeps_the_held_bytes() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            q.insert(base + 20, filled(&p, 10, 0xAA)); // 20..30
            assert_eq!(q.insert(base + 12, filled(&p, 10, 0xBB)), Insert::Queued); // 12..22
            assert_eq!(ranges(&q, base), [(12, 20), (20, 30)]);
            assert_eq!(q.bytes(), 18);
            assert_eq!(q.pop_ready(base + 12).unwrap().as_slice(), [0xBB; 8]);
            assert_eq!(q.pop_ready(base + 20).unwrap().as_slice(), [0xAA; 10]);
        }
    }

    #[test]
    fn overlap_on_both_sides_fills_the_gap() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            q.insert(base + 10, filled(&p, 10, 0xAA)); // 10..20
            q.insert(base + 30, filled(&p, 10, 0xCC)); // 30..40
            assert_eq!(q.insert(base + 15, filled(&p, 20, 0xBB)), Insert::Queued); // 15..35
            assert_eq!(ranges(&q, base), [(10, 20), (20, 30), (30, 40)]);
            check_invariants(&q);
            let mut out = Vec::new();
            let mut nxt = base + 10;
            while let Some(b) = q.pop_ready(nxt) {
                nxt += b.len() as u32;
                out.extend_from_slice(&b);
            }
            assert_eq!(nxt, base + 40);
            let mut expected = vec![0xAA; 10];
            expected.extend([0xBB; 10]);
            expected.extend([0xCC; 10]);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn covering_segment_replaces_held_ones() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            q.insert(base + 10, filled(&p, 5, 0xAA)); // 10..15
            q.insert(base + 20, filled(&p, 5, 0xAA)); // 20..25
            q.insert(base + 30, filled(&p, 5, 0xAA)); // 30..35
            q.insert(base + 50, filled(&p, 5, 0xAA)); // 50..55
                                                      // 5..40 covers the first three and fills the gaps between them.
            assert_eq!(q.insert(base + 5, filled(&p, 35, 0xBB)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(5, 40), (50, 55)]);
            assert_eq!(q.bytes(), 40);
            check_invariants(&q);
            // Same start, longer: the shorter held one is replaced.
            q.insert(base + 60, filled(&p, 5, 0xAA)); // 60..65
            assert_eq!(q.insert(base + 60, filled(&p, 8, 0xCC)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(5, 40), (50, 55), (60, 68)]);
            // Trimmed in front, then covering: 38..58 -> 40..58 replaces 50..55.
            assert_eq!(q.insert(base + 38, filled(&p, 20, 0xDD)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(5, 40), (40, 58), (60, 68)]);
            // Trimmed in front, covering, and cut at the tail: 30..64 -> 40..60, replacing
            // 40..58.
            assert_eq!(q.insert(base + 30, filled(&p, 34, 0xEE)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(5, 40), (40, 60), (60, 68)]);
            // Covering two and cut at the tail: 2..64 -> 2..60, replacing both.
            assert_eq!(q.insert(base + 2, filled(&p, 62, 0xFF)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(2, 60), (60, 68)]);
            assert_eq!(q.bytes(), 66);
            check_invariants(&q);
            q.clear();
        }
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn covering_a_segment_and_overlapping_the_next() {
        let p = pool();
        let base = SeqNum(u32::MAX - 12);
        let mut q = OutOfOrder::new(8);
        q.insert(base + 10, filled(&p, 5, 0xAA)); // 10..15 (across 2^32)
        q.insert(base + 20, filled(&p, 10, 0xAA)); // 20..30
        assert_eq!(q.insert(base + 8, filled(&p, 17, 0xBB)), Insert::Queued); // 8..25
        assert_eq!(ranges(&q, base), [(8, 20), (20, 30)]);
        assert_eq!(q.pop_ready(base + 8).unwrap().as_slice(), [0xBB; 12]);
        assert_eq!(q.pop_ready(base + 20).unwrap().as_slice(), [0xAA; 10]);
    }

    #[test]
    fn full_queue_drops_the_highest() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(3);
            q.insert(base + 10, seg(&p, base + 10, 5));
            q.insert(base + 20, seg(&p, base + 20, 5));
            q.insert(base + 30, seg(&p, base + 30, 5));
            // Above everything held: dropped.
            assert_eq!(q.insert(base + 40, seg(&p, base + 40, 5)), Insert::Full);
            // Touching the last one's end is still above it.
            assert_eq!(q.insert(base + 35, seg(&p, base + 35, 5)), Insert::Full);
            assert_eq!(ranges(&q, base), [(10, 15), (20, 25), (30, 35)]);
            // Below the highest: the highest is evicted.
            assert_eq!(q.insert(base + 0, seg(&p, base, 5)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(0, 5), (10, 15), (20, 25)]);
            assert_eq!(q.bytes(), 15);
            // In a gap, overlapping its successor's front, which is the one evicted: the
            // trimmed segment stays trimmed.
            assert_eq!(q.insert(base + 16, seg(&p, base + 16, 6)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(0, 5), (10, 15), (16, 20)]);
            // Covering held segments needs no eviction: they make room.
            assert_eq!(q.insert(base + 9, seg(&p, base + 9, 13)), Insert::Queued);
            assert_eq!(ranges(&q, base), [(0, 5), (9, 22)]);
            // Duplicates stay duplicates when full.
            q.insert(base + 30, seg(&p, base + 30, 5));
            assert_eq!(
                q.insert(base + 30, seg(&p, base + 30, 5)),
                Insert::Duplicate
            );
            check_invariants(&q);
            q.clear();
        }
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn zero_bound_holds_nothing() {
        let p = pool();
        let mut q = OutOfOrder::new(0);
        assert_eq!(q.insert(SeqNum(5), seg(&p, SeqNum(5), 5)), Insert::Full);
        assert!(q.is_empty());
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn pop_ready_strips_what_was_received() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            q.insert(base + 10, seg(&p, base + 10, 10)); // 10..20
            q.insert(base + 30, seg(&p, base + 30, 10)); // 30..40
                                                         // A gap before the first segment.
            assert!(q.pop_ready(base + 5).is_none());
            assert!(q.pop_ready(base + 9).is_none());
            // RCV.NXT inside the first segment: its front is stripped.
            let b = q.pop_ready(base + 14).unwrap();
            assert_eq!(b.len(), 6);
            assert!(b
                .iter()
                .enumerate()
                .all(|(i, &x)| x == byte_at(base + 14 + i as u32)));
            assert_eq!(q.bytes(), 10);
            // A gap again.
            assert!(q.pop_ready(base + 20).is_none());
            assert_eq!(q.len(), 1);
        }
    }

    #[test]
    fn pop_ready_drops_stale_segments() {
        let p = pool();
        for base in BASES.map(SeqNum) {
            let mut q = OutOfOrder::new(8);
            q.insert(base + 10, seg(&p, base + 10, 5)); // 10..15
            q.insert(base + 15, seg(&p, base + 15, 5)); // 15..20
            q.insert(base + 22, seg(&p, base + 22, 8)); // 22..30
                                                        // The first two were received meanwhile; the third straddles RCV.NXT.
            let b = q.pop_ready(base + 25).unwrap();
            assert_eq!(b.as_slice(), seg(&p, base + 25, 5).as_slice());
            assert!(q.is_empty());
            assert_eq!(q.bytes(), 0);
            // Ending exactly at RCV.NXT is stale too.
            q.insert(base + 40, seg(&p, base + 40, 5));
            assert!(q.pop_ready(base + 45).is_none());
            assert!(q.is_empty());
            assert_eq!(q.first_seq(), None);
            assert_eq!(q.last_end(), None);
        }
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn wraps_around_2_32() {
        let p = pool();
        let mut q = OutOfOrder::new(8);
        let a = SeqNum(u32::MAX - 3);
        q.insert(SeqNum(6), seg(&p, SeqNum(6), 4)); // 6..10, after the wrap
        q.insert(a, seg(&p, a, 8)); // MAX-3 ..= 3 (wraps): 2^32-4 .. 4
        assert_eq!(q.first_seq(), Some(a));
        assert_eq!(q.last_end(), Some(SeqNum(10)));
        assert_eq!(q.insert(SeqNum(2), seg(&p, SeqNum(2), 6)), Insert::Queued); // 2..8 -> 4..6
        assert_eq!(ranges(&q, a), [(0, 8), (8, 10), (10, 14)]);
        let first = q.pop_ready(a + 2).unwrap();
        assert_eq!(first.len(), 6);
        assert_eq!(first.as_slice(), seg(&p, a + 2, 6).as_slice());
        assert_eq!(q.pop_ready(SeqNum(4)).unwrap().len(), 2);
        assert_eq!(q.pop_ready(SeqNum(6)).unwrap().len(), 4);
        assert!(q.is_empty());
    }

    #[test]
    fn debug_shows_ranges() {
        let p = pool();
        let mut q = OutOfOrder::new(4);
        q.insert(SeqNum(100), seg(&p, SeqNum(100), 10));
        assert_eq!(
            format!("{q:?}"),
            "OutOfOrder { max_segments: 4, bytes: 10, segments: [100..110] }"
        );
    }

    #[test]
    fn reassembles_a_shuffled_stream() {
        // A receiver fed random, overlapping, reordered, duplicated segments of a stream
        // that crosses 2^32 delivers the stream exactly, holding at most 6 segments.
        let p = pool();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for base in BASES.map(SeqNum) {
            const STREAM: u32 = 3000;
            let mut q = OutOfOrder::new(6);
            let mut rcv_nxt = base;
            let mut delivered: Vec<u8> = Vec::new();
            let mut rounds = 0;
            while rcv_nxt != base + STREAM {
                rounds += 1;
                assert!(rounds < 100_000, "no progress");
                // A segment within a 600-byte window past RCV.NXT, sometimes behind it.
                let off = (rcv_nxt - base) as i64 + (next() % 600) as i64 - 50;
                let off = off.clamp(0, i64::from(STREAM) - 1) as u32;
                let len = (1 + next() % 120) as u32;
                let len = len.min(STREAM - off);
                let start = base + off;
                let payload = seg(&p, start, len);
                let end = start + len;
                if start.le(rcv_nxt) {
                    // In order (or partly old): deliver the new part, as the connection
                    // would, then whatever became ready.
                    if end.gt(rcv_nxt) {
                        let mut b = payload;
                        b.strip_front((rcv_nxt - start) as usize).unwrap();
                        rcv_nxt += b.len() as u32;
                        delivered.extend_from_slice(&b);
                        while let Some(b) = q.pop_ready(rcv_nxt) {
                            rcv_nxt += b.len() as u32;
                            delivered.extend_from_slice(&b);
                        }
                    }
                } else {
                    q.insert(start, payload);
                }
                check_invariants(&q);
                if let Some(first) = q.first_seq() {
                    assert!(first.gt(rcv_nxt));
                }
            }
            let expected: Vec<u8> = (0..STREAM).map(|i| byte_at(base + i)).collect();
            assert_eq!(delivered, expected);
            q.clear();
            assert_eq!(p.stats().in_use(), 0);
        }
    }
}
