//! The receive queue: in-order data that has arrived and is waiting for the application.
//!
//! When a segment arrives carrying the next bytes the receiver expects (its first byte is
//! RCV.NXT), TCP accepts them, advances RCV.NXT and holds them until the application reads
//! them (RFC 9293 3.10.7.4). The bytes already sit in a packet buffer, behind the headers
//! the layers below have stripped, so the queue keeps the buffers themselves instead of
//! copying their payload into a ring: the one copy is the one into the application's
//! buffer, on [`read`](RecvQueue::read).
//!
//! ```text
//!   front                                                        back
//!   [ partly read | PacketBuf ] [ PacketBuf ] [ PacketBuf + coalesced small payloads ]
//!        '-- read() copies out, strips the front, pops emptied buffers
//! ```
//!
//! Zero copy has a cost: a buffer is pinned for as long as any byte of it is unread. A peer
//! sending one-byte segments would pin one pool buffer per byte and drain the pool long
//! before the receive window (counted in bytes) fills. So small payloads are copied into
//! the tailroom of the last queued buffer when they fit, and their own buffer goes straight
//! back to the pool; see [`COALESCE_MAX`].
//!
//! The caller (the connection) bounds the queue: it advertises a receive window no larger
//! than the room it has left, so the bytes queued never exceed the receive buffer size, and
//! the queue's deque, once grown to the most buffers ever held, stops allocating.

use std::collections::VecDeque;
use std::fmt;

use loopstack_buf::PacketBuf;

/// Payloads of up to this many bytes are copied into the tailroom of the last queued buffer
/// when they fit there, instead of being queued in their own buffer.
///
/// This is what Linux's `tcp_try_coalesce` does, for the same reason: a flood of tiny
/// segments must not pin one pool buffer each. Copying is cheap for small payloads; above
/// 512 bytes the copy would start to cost more than holding the buffer.
pub const COALESCE_MAX: usize = 512;

/// The in-order receive queue of one connection: payload buffers in arrival order.
#[derive(Default)]
pub struct RecvQueue {
    /// The queued payloads, oldest first; the front one may be partly read. Never holds an
    /// empty buffer.
    bufs: VecDeque<PacketBuf>,
    /// Bytes queued: the sum of the buffers' lengths.
    len: usize,
}

impl RecvQueue {
    /// An empty queue. It allocates nothing until the first buffer is queued.
    pub fn new() -> Self {
        RecvQueue::default()
    }

    /// Queues the payload of an in-order segment, which the caller has stripped of its
    /// headers. Empty payloads are ignored (dropped back to their pool).
    ///
    /// A payload of at most [`COALESCE_MAX`] bytes that fits in the tailroom of the last
    /// queued buffer is copied there instead, and its own buffer is dropped.
    // Always inlined: called once per segment with data, and out of line its call cost
    // 18 instructions of the 46 it took (docs/benchmarks.md, item 34).
    #[inline(always)]
    pub fn push(&mut self, payload: PacketBuf) {
        if payload.is_empty() {
            return;
        }
        self.len += payload.len();
        let n = payload.len();
        if n <= COALESCE_MAX {
            // A buffer with an attached fragment has no tailroom (bytes there would come
            // before the fragment's), so it is never coalesced into.
            if let Some(last) = self.bufs.back_mut() {
                if last.tailroom() >= n {
                    // `copy_out`, not `as_slice`: the payload may itself be partly a fragment.
                    payload.copy_out(0, &mut last.tailroom_mut()[..n]);
                    // Cannot fail: the tailroom was just checked. `payload` drops here and
                    // its storage returns to the pool.
                    let committed = last.commit_tailroom(n);
                    debug_assert!(committed.is_ok());
                    return;
                }
            }
        }
        self.bufs.push_back(payload);
    }

    /// Copies queued bytes, in order, into `out` and removes them; returns how many (0 if
    /// the queue is empty or `out` is). Buffers read to their end go back to the pool.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        self.read_recycling(out, drop)
    }

    /// [`read`](Self::read), handing each buffer read to its end to `recycle` instead of
    /// dropping it.
    pub fn read_recycling(&mut self, out: &mut [u8], mut recycle: impl FnMut(PacketBuf)) -> usize {
        let mut copied = 0;
        while copied < out.len() {
            // Taken off the queue first, and put back only if `out` fills before its end:
            // one deque operation for a buffer read whole (every read of a small message),
            // where looking at the front and then popping it cost two.
            let Some(mut front) = self.bufs.pop_front() else {
                break;
            };
            // The payload's own bytes, then those of its fragment if it has one (a segment
            // whose payload TCP's sender shared instead of copying).
            let n = front.copy_out(0, &mut out[copied..]);
            copied += n;
            if n == front.len() {
                recycle(front);
            } else {
                // n < len, so `out` is full: the rest goes back in front, for the next read.
                let stripped = front.strip_front(n);
                debug_assert!(stripped.is_ok());
                self.bufs.push_front(front);
                break;
            }
        }
        self.len -= copied;
        copied
    }

    /// Takes whole buffers off the front, in order, while together they hold at most `max`
    /// bytes and `out` has room, into the first places of `out`; returns how many buffers
    /// and how many bytes. Nothing is taken if the front buffer alone holds more than
    /// `max`. For a reader that copies out of the buffers itself, later (a blocking socket
    /// copies without the stack's lock held).
    pub fn take_front(&mut self, max: usize, out: &mut [Option<PacketBuf>]) -> (usize, usize) {
        let (mut taken, mut bytes) = (0, 0);
        while taken < out.len() {
            let Some(front) = self.bufs.front() else {
                break;
            };
            if bytes + front.len() > max {
                break;
            }
            bytes += front.len();
            out[taken] = self.bufs.pop_front();
            taken += 1;
        }
        self.len -= bytes;
        (taken, bytes)
    }

    /// Copies queued bytes, in order, into `out` without removing them; returns how many.
    pub fn peek(&self, out: &mut [u8]) -> usize {
        let mut copied = 0;
        for buf in &self.bufs {
            if copied == out.len() {
                break;
            }
            copied += buf.copy_out(0, &mut out[copied..]);
        }
        copied
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packet buffers held, i.e. pinned in their pool.
    pub fn buffers(&self) -> usize {
        self.bufs.len()
    }

    /// Drops every queued byte and returns the buffers to their pool.
    pub fn clear(&mut self) {
        self.bufs.clear();
        self.len = 0;
    }
}

impl fmt::Debug for RecvQueue {
    /// Shows the sizes, not the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvQueue")
            .field("len", &self.len)
            .field("buffers", &self.bufs.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_buf::{PacketPool, PoolConfig, SizeClass};

    /// A pool whose buffers hold 64 bytes past a headroom of 8.
    fn pool(count: usize) -> PacketPool {
        PacketPool::new(PoolConfig {
            headroom: 8,
            classes: vec![SizeClass {
                capacity: 64,
                count,
            }],
        })
        .unwrap()
    }

    /// A buffer holding `bytes` with no tailroom left: it can never be coalesced into.
    fn full_buf(pool: &PacketPool, bytes: &[u8]) -> PacketBuf {
        // Fill the tailroom with padding, strip it, then write the bytes at the very end.
        let mut b = pool.alloc(64).unwrap();
        let pad = b.tailroom() - bytes.len();
        b.append(pad).unwrap();
        b.strip_front(pad).unwrap();
        b.extend_from_slice(bytes).unwrap();
        assert_eq!(b.tailroom(), 0);
        b
    }

    #[test]
    fn empty_queue() {
        let mut q = RecvQueue::new();
        let mut out = [0u8; 4];
        assert_eq!(q.read(&mut out), 0);
        assert_eq!(q.peek(&mut out), 0);
        assert!(q.is_empty());
        assert_eq!((q.len(), q.buffers()), (0, 0));
    }

    #[test]
    fn empty_payloads_are_ignored() {
        let p = pool(2);
        let mut q = RecvQueue::new();
        q.push(p.alloc(0).unwrap());
        assert_eq!(q.buffers(), 0);
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn small_payloads_coalesce_into_the_last_buffer() {
        let p = pool(4);
        let mut q = RecvQueue::new();
        q.push(p.alloc_from_slice(b"abc").unwrap());
        q.push(p.alloc_from_slice(b"de").unwrap());
        q.push(p.alloc_from_slice(b"f").unwrap());
        assert_eq!((q.len(), q.buffers()), (6, 1));
        // The coalesced payloads' buffers went back to the pool.
        assert_eq!(p.stats().in_use(), 1);
        let mut out = [0u8; 8];
        assert_eq!(q.read(&mut out), 6);
        assert_eq!(&out[..6], b"abcdef");
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn a_flood_of_tiny_segments_pins_few_buffers() {
        let p = pool(5);
        let mut q = RecvQueue::new();
        for i in 0..200u8 {
            q.push(p.alloc_from_slice(&[i]).unwrap());
        }
        assert_eq!(q.len(), 200);
        // 64 bytes a buffer: ceil(200 / 64) = 4 buffers, not 200.
        assert_eq!(q.buffers(), 4);
        let mut out = [0u8; 256];
        assert_eq!(q.read(&mut out), 200);
        assert!(out[..200].iter().enumerate().all(|(i, &b)| b == i as u8));
    }

    #[test]
    fn no_coalescing_without_tailroom() {
        let p = pool(4);
        let mut q = RecvQueue::new();
        q.push(full_buf(&p, b"full"));
        q.push(p.alloc_from_slice(b"next").unwrap());
        assert_eq!(q.buffers(), 2);
        let mut out = [0u8; 8];
        assert_eq!(q.read(&mut out), 8);
        assert_eq!(&out, b"fullnext");
    }

    #[test]
    fn large_payloads_are_queued_as_is() {
        let p = PacketPool::new(PoolConfig {
            headroom: 8,
            classes: vec![SizeClass {
                capacity: 4096,
                count: 3,
            }],
        })
        .unwrap();
        let mut q = RecvQueue::new();
        q.push(p.alloc_from_slice(b"x").unwrap());
        // Fits in the tailroom, but is bigger than COALESCE_MAX: not copied.
        q.push(p.alloc_from_slice(&[7u8; COALESCE_MAX + 1]).unwrap());
        assert_eq!(q.buffers(), 2);
        // Exactly COALESCE_MAX is still coalesced (into the second buffer).
        q.push(p.alloc_from_slice(&[8u8; COALESCE_MAX]).unwrap());
        assert_eq!(q.buffers(), 2);
        assert_eq!(q.len(), 1 + 2 * COALESCE_MAX + 1);
        assert_eq!(p.stats().in_use(), 2);
    }

    #[test]
    fn partial_reads_strip_the_front() {
        let p = pool(4);
        let mut q = RecvQueue::new();
        q.push(full_buf(&p, b"hello "));
        q.push(full_buf(&p, b"world"));
        let mut out = [0u8; 4];
        assert_eq!(q.read(&mut out), 4);
        assert_eq!(&out, b"hell");
        assert_eq!((q.len(), q.buffers()), (7, 2));
        // A read spanning the end of one buffer and the start of the next.
        assert_eq!(q.read(&mut out), 4);
        assert_eq!(&out, b"o wo");
        assert_eq!((q.len(), q.buffers()), (3, 1));
        assert_eq!(p.stats().in_use(), 1);
        assert_eq!(q.read(&mut out), 3);
        assert_eq!(&out[..3], b"rld");
        assert!(q.is_empty());
        assert_eq!(q.buffers(), 0);
        assert_eq!(p.stats().in_use(), 0);
        assert_eq!(q.read(&mut []), 0);
    }

    #[test]
    fn peek_consumes_nothing() {
        let p = pool(4);
        let mut q = RecvQueue::new();
        q.push(full_buf(&p, b"abc"));
        q.push(full_buf(&p, b"defg"));
        let mut out = [0u8; 5];
        assert_eq!(q.peek(&mut out), 5);
        assert_eq!(&out, b"abcde");
        assert_eq!(q.peek(&mut out), 5);
        assert_eq!((q.len(), q.buffers()), (7, 2));
        let mut big = [0u8; 10];
        assert_eq!(q.peek(&mut big), 7);
        assert_eq!(&big[..7], b"abcdefg");
        assert_eq!(q.peek(&mut []), 0);
        // After a partial read, peek starts at the new front.
        q.read(&mut [0u8; 2]);
        assert_eq!(q.peek(&mut out), 5);
        assert_eq!(&out, b"cdefg");
    }

    #[test]
    fn clear_returns_buffers() {
        let p = pool(4);
        let mut q = RecvQueue::new();
        q.push(full_buf(&p, b"abc"));
        q.push(full_buf(&p, b"def"));
        assert_eq!(p.stats().in_use(), 2);
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.buffers(), 0);
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn debug_shows_sizes() {
        let p = pool(1);
        let mut q = RecvQueue::default();
        q.push(p.alloc_from_slice(b"xy").unwrap());
        assert_eq!(format!("{q:?}"), "RecvQueue { len: 2, buffers: 1 }");
    }

    /// Whole buffers come off the front in order while they fit in `max` and in `out`; a
    /// front buffer larger than `max` leaves everything where it was.
    #[test]
    fn take_front_takes_whole_buffers_that_fit() {
        let p = pool(8);
        let mut q = RecvQueue::new();
        for bytes in [&b"aaaa"[..], b"bbb", b"cc", b"d"] {
            q.push(full_buf(&p, bytes));
        }
        let mut out: [Option<PacketBuf>; 3] = Default::default();
        assert_eq!(q.take_front(3, &mut out), (0, 0), "the first is 4 bytes");
        assert!(out.iter().all(Option::is_none));
        assert_eq!(q.len(), 10);
        assert_eq!(
            q.take_front(8, &mut out),
            (2, 7),
            "aaaa and bbb; cc would make 9"
        );
        assert_eq!(out[0].as_deref(), Some(&b"aaaa"[..]));
        assert_eq!(out[1].as_deref(), Some(&b"bbb"[..]));
        assert_eq!((q.len(), q.buffers()), (3, 2));
        let mut two: [Option<PacketBuf>; 1] = Default::default();
        assert_eq!(
            q.take_front(100, &mut two),
            (1, 2),
            "room for one buffer only"
        );
        let mut rest = [0u8; 4];
        assert_eq!(q.read(&mut rest), 1);
        assert_eq!(&rest[..1], b"d");
        assert!(q.is_empty());
    }
}
