//! The send buffer: bytes the application has written that the peer has not yet
//! acknowledged.
//!
//! TCP must keep every byte it sends until the peer acknowledges it, because it may have to
//! send it again (RFC 9293 3.8.1). So the send side holds one contiguous stream of bytes:
//!
//! ```text
//!         SND.UNA              SND.NXT
//!   offset   0                    |                         len          capacity
//!            |  sent, unacknowledged  |  written, not yet sent  |    free     |
//!            '-- consume(n) on ACK     '-- read_at(offset) to build segments
//! ```
//!
//! Offset 0 is always the byte numbered SND.UNA; the sequence number of the byte at offset
//! `o` is `SND.UNA + o`. An acknowledgment of `n` new bytes drops them from the front
//! ([`consume`](SendBuffer::consume)); building a segment, first transmission or
//! retransmission alike, copies bytes out at an offset ([`read_at`](SendBuffer::read_at)).
//!
//! The bytes live in a ring: a fixed slice allocated once, whose data may wrap from the end
//! back to the start, so neither acknowledging nor writing ever moves bytes around. Its
//! capacity is the most the application can have in flight or queued, and so also bounds
//! how much memory one connection's sending side can take.

use std::fmt;

/// A fixed-capacity byte ring holding a connection's unacknowledged and unsent data.
pub struct SendBuffer {
    /// The ring's storage, allocated once.
    ring: Box<[u8]>,
    /// Index in `ring` of offset 0 (SND.UNA's byte).
    head: usize,
    /// Bytes held, starting at `head` and wrapping at the end of `ring`.
    len: usize,
}

impl SendBuffer {
    /// An empty buffer of `capacity` bytes, allocated now; it never grows.
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            ring: vec![0u8; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// Bytes held: unacknowledged plus unsent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held (everything written has been acknowledged).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left for [`write`](Self::write).
    pub fn free(&self) -> usize {
        self.ring.len() - self.len
    }

    /// The ring index `offset` bytes after `head`, for `offset <= capacity`.
    fn index(&self, offset: usize) -> usize {
        // head < capacity (or both are 0) and offset <= capacity: one subtraction wraps it,
        // with no division and no special case for a zero capacity.
        let i = self.head + offset;
        if i >= self.ring.len() {
            i - self.ring.len()
        } else {
            i
        }
    }

    /// Appends as much of `data` as fits and returns how many bytes were taken (fewer than
    /// `data.len()` when the buffer fills: the application must retry the rest later).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        let tail = self.index(self.len);
        // The free space runs from `tail` to the end of the ring, then wraps to the start.
        let first = n.min(self.ring.len() - tail);
        self.ring[tail..tail + first].copy_from_slice(&data[..first]);
        self.ring[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Copies bytes starting at `offset` (0 is SND.UNA's byte) into `out` and returns how
    /// many: `min(out.len(), len - offset)`, or 0 if `offset >= len`. Nothing is consumed.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = out.len().min(self.len - offset);
        let start = self.index(offset);
        let first = n.min(self.ring.len() - start);
        out[..first].copy_from_slice(&self.ring[start..start + first]);
        out[first..n].copy_from_slice(&self.ring[..n - first]);
        n
    }

    /// Drops `n` acknowledged bytes from the front (all of them if `n > len`).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        // Once empty, restart at the beginning of the ring, so that the next writes (often
        // the whole of them) land in one piece and are read back with one copy.
        self.head = if self.len == 0 { 0 } else { self.index(n) };
    }

    /// Drops everything held (a connection reset or aborted).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

impl fmt::Debug for SendBuffer {
    /// Shows the layout, not the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBuffer")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .field("head", &self.head)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_buffer_is_empty() {
        let b = SendBuffer::new(16);
        assert_eq!(
            (b.capacity(), b.len(), b.free(), b.is_empty()),
            (16, 0, 16, true)
        );
        let mut out = [0u8; 4];
        assert_eq!(b.read_at(0, &mut out), 0);
    }

    #[test]
    fn write_takes_what_fits() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.write(b"hello"), 5);
        assert_eq!(b.write(b"world"), 3);
        assert_eq!(b.write(b"!"), 0);
        assert_eq!((b.len(), b.free()), (8, 0));
        let mut out = [0u8; 8];
        assert_eq!(b.read_at(0, &mut out), 8);
        assert_eq!(&out, b"hellowor");
        assert_eq!(b.write(b""), 0);
    }

    #[test]
    fn read_at_offsets_and_short_outputs() {
        let mut b = SendBuffer::new(16);
        b.write(b"0123456789");
        let mut out = [0u8; 4];
        assert_eq!(b.read_at(3, &mut out), 4);
        assert_eq!(&out, b"3456");
        assert_eq!(b.read_at(8, &mut out), 2);
        assert_eq!(&out[..2], b"89");
        assert_eq!(b.read_at(10, &mut out), 0);
        assert_eq!(b.read_at(usize::MAX, &mut out), 0);
        assert_eq!(b.read_at(0, &mut []), 0);
        // Reading consumes nothing.
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn consume_drops_the_front() {
        let mut b = SendBuffer::new(16);
        b.write(b"abcdef");
        b.consume(2);
        assert_eq!(b.len(), 4);
        let mut out = [0u8; 8];
        assert_eq!(b.read_at(0, &mut out), 4);
        assert_eq!(&out[..4], b"cdef");
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.free(), 16);
    }

    #[test]
    fn data_wraps_around_the_ring() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.write(b"abcdef"), 6);
        b.consume(5); // head at 5, "f" held
        assert_eq!(b.write(b"ghijklm"), 7); // wraps: "fgh" at 5..8, "ijklm" at 0..5
        assert_eq!(b.free(), 0);
        let mut out = [0u8; 8];
        assert_eq!(b.read_at(0, &mut out), 8);
        assert_eq!(&out, b"fghijklm");
        // A read that starts past the wrap point.
        assert_eq!(b.read_at(4, &mut out), 4);
        assert_eq!(&out[..4], b"jklm");
        // A read that straddles it.
        let mut three = [0u8; 3];
        assert_eq!(b.read_at(1, &mut three), 3);
        assert_eq!(&three, b"ghi");
        // Consuming across the wrap point.
        b.consume(4);
        assert_eq!(b.read_at(0, &mut out), 4);
        assert_eq!(&out[..4], b"jklm");
        assert_eq!(b.write(b"nopq"), 4);
        assert_eq!(b.read_at(0, &mut out), 8);
        assert_eq!(&out, b"jklmnopq");
    }

    #[test]
    fn emptying_restarts_at_the_front() {
        let mut b = SendBuffer::new(8);
        b.write(b"abcde");
        b.consume(5);
        assert_eq!(b.head, 0);
        b.write(b"12345678");
        let mut out = [0u8; 8];
        assert_eq!(b.read_at(0, &mut out), 8);
        assert_eq!(&out, b"12345678");
    }

    #[test]
    fn clear_empties() {
        let mut b = SendBuffer::new(4);
        b.write(b"abcd");
        b.consume(1);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.free(), 4);
        assert_eq!(b.write(b"wxyz"), 4);
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut b = SendBuffer::new(0);
        assert_eq!(b.write(b"abc"), 0);
        b.consume(1);
        let mut out = [0u8; 1];
        assert_eq!(b.read_at(0, &mut out), 0);
        assert!(b.is_empty());
        assert_eq!(b.free(), 0);
    }

    #[test]
    fn behaves_like_a_byte_stream() {
        // Random writes, reads and acknowledgments against a model: the stream's bytes are
        // numbered, byte k being k mod 251.
        let mut b = SendBuffer::new(37);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut una, mut written) = (0u64, 0u64);
        let mut chunk = [0u8; 64];
        for _ in 0..5000 {
            match next() % 3 {
                0 => {
                    let n = (next() % 50) as usize;
                    for (i, byte) in chunk[..n].iter_mut().enumerate() {
                        *byte = ((written + i as u64) % 251) as u8;
                    }
                    let taken = b.write(&chunk[..n]);
                    assert_eq!(taken, n.min(37 - (written - una) as usize));
                    written += taken as u64;
                }
                1 => {
                    let n = (next() % 20) as usize;
                    b.consume(n);
                    una = (una + n as u64).min(written);
                }
                _ => {
                    let offset = (next() % 40) as usize;
                    let want = (next() % 64) as usize;
                    let got = b.read_at(offset, &mut chunk[..want]);
                    let held = (written - una) as usize;
                    assert_eq!(got, want.min(held.saturating_sub(offset)));
                    for (i, byte) in chunk[..got].iter().enumerate() {
                        assert_eq!(*byte, ((una + (offset + i) as u64) % 251) as u8);
                    }
                }
            }
            assert_eq!(b.len() as u64, written - una);
            assert_eq!(b.len() + b.free(), 37);
        }
    }

    #[test]
    fn debug_shows_layout_only() {
        let mut b = SendBuffer::new(8);
        b.write(b"secret");
        let shown = format!("{b:?}");
        assert!(shown.contains("len: 6") && !shown.contains("secret"));
    }
}
