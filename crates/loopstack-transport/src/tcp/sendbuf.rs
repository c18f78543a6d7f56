//! The send buffer: bytes the application has written that the peer has not yet
//! acknowledged.
//!
//! TCP must keep every byte it sends until the peer acknowledges it, because it may have to
//! send it again (RFC 9293 3.8.1). So the send side holds one stream of bytes:
//!
//! ```text
//!         SND.UNA              SND.NXT
//!   offset   0                    |                         len          capacity
//!            |  sent, unacknowledged  |  written, not yet sent  |    free     |
//!            '-- consume(n) on ACK     '-- read_at / share_at to build segments
//! ```
//!
//! Offset 0 is always the byte numbered SND.UNA; the sequence number of the byte at offset
//! `o` is `SND.UNA + o`. An acknowledgment of `n` new bytes drops them from the front
//! ([`consume`](SendBuffer::consume)).
//!
//! ## Blocks, and why the payload is not copied again
//!
//! The bytes live in blocks of [`BLOCK`] bytes (less for a buffer smaller than that), filled
//! in order:
//!
//! ```text
//!   chunks:  [ block 0: acked | unacked ] [ block 1: unsent ........ ] [ block 2: ... | room ]
//!   spare:   [ block ] [ block ]   (acknowledged, reused once no packet holds them)
//! ```
//!
//! Blocks are a power of two long, not a whole number of segments: an application writing
//! in power-of-two chunks (64 KiB is typical) then fills whole blocks, and a byte's offset
//! in its block is its offset in the application's buffers. That keeps the sender's copy
//! in and the receiver's copy out aligned the same way on both sides; with blocks of one
//! segment (65,483 bytes on IPv4 `lo`), the two drifted 53 bytes apart per block and
//! `memcpy` (`rep movsb`) ran three times slower on misaligned copies (docs/benchmarks.md).
//! A segment stops at a block's end, so the last segment of a block can be short.
//!
//! A segment is built either by copying its payload into the packet's buffer
//! ([`read_at`](SendBuffer::read_at)), or, when it fills the rest of a full block, by
//! attaching that part of the block to the packet without copying it
//! ([`share_at`](SendBuffer::share_at), `PacketBuf::attach`). Sharing saves one of the three
//! copies a byte otherwise takes on its way from one application to the other over `lo`
//! (into this buffer, into the packet, out to the reader), which is most of a bulk
//! transfer's time (docs/benchmarks.md). Linux does the same: `tcp_sendmsg` copies into
//! pages, and the segments sent point at those pages.
//!
//! A block is reference counted and written only while nothing else holds it
//! (`Arc::get_mut`): once shared, a block is read-only, and an acknowledged block waits in
//! `spare` until the receiver has read the bytes it pinned. So only blocks that are full
//! or covered half by the segment, and small segments are copied: sharing seals a block
//! (no more is written into it), and every small write would then take a block of its own.
//!
//! Memory: all [`max_blocks`](SendBuffer::max_blocks) blocks are allocated at the first
//! write: enough for a full buffer plus [`PIN_MAX`] held by readers (64 KiB of capacity
//! takes six 64 KiB blocks; the default 1 MiB, 21), each with 4 KiB of padding that puts
//! its first byte at the same place in a page wherever it was allocated (see `Block`). At
//! most `PIN_MAX` are shared at once;
//! past that, segments are copied, so a free block is always there for the next write and
//! the buffer never allocates again, however slowly the other end reads.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Size of a block, in bytes: the largest IP packet's worth, so that one block holds a
/// whole segment on `lo`.
pub const BLOCK: usize = 64 * 1024;

/// The most blocks shared with packets or readers at once (see
/// [`share_at`](SendBuffer::share_at)).
pub const PIN_MAX: usize = 4;

/// Segments of fewer payload bytes than this are always copied: the copy costs less than
/// holding the block and counting its references.
pub const SHARE_MIN: usize = 2048;

/// Where a block's bytes start, modulo 4 KiB: half a page from the application's buffers
/// in the common case (see [`Block`]).
const BLOCK_PAGE_OFFSET: usize = 2048;

/// One block: `size` bytes of `bytes` from `base` on.
///
/// A block of 4 KiB or more starts [`BLOCK_PAGE_OFFSET`] bytes into a 4 KiB page, whatever
/// address the allocator returned. glibc copies large blocks with `rep movsb`, which on
/// the AMD CPUs we benchmark on runs about fifteen times slower when the destination is 1
/// to 31 bytes ahead of the source modulo 4 KiB (docs/benchmarks.md). Where a block landed
/// used to be luck: with six blocks 32 bytes apart modulo 4 KiB, one of them met an
/// application buffer in that window often enough to cut a bulk transfer to a third of
/// its speed in some runs and not others. At a fixed half-page offset, a copy in or out is slow only for an
/// application buffer that itself starts within 31 bytes of half a page; buffers from
/// `mmap` (every large one) start 16 bytes into a page, far from it. The cost is 4 KiB of
/// padding per 64 KiB block.
struct Block {
    bytes: Arc<[u8]>,
    base: usize,
}

impl Block {
    /// A zeroed block of `size` bytes.
    fn new(size: usize) -> Self {
        if size < 4096 {
            return Block {
                bytes: Arc::from(vec![0u8; size]),
                base: 0,
            };
        }
        let bytes: Arc<[u8]> = Arc::from(vec![0u8; size + 4096]);
        let at = bytes.as_ptr() as usize % 4096;
        let base = (BLOCK_PAGE_OFFSET + 4096 - at) % 4096;
        Block { bytes, base }
    }

    /// Whether a packet or a reader holds the block besides its buffer.
    fn is_shared(&self) -> bool {
        Arc::strong_count(&self.bytes) > 1
    }

    /// The block's bytes, writable while nothing else holds them.
    fn bytes_mut(&mut self, size: usize) -> Option<&mut [u8]> {
        let base = self.base;
        Arc::get_mut(&mut self.bytes).map(|b| &mut b[base..base + size])
    }

    /// The bytes at `range` of the block.
    fn get(&self, range: Range<usize>) -> &[u8] {
        &self.bytes[self.base + range.start..self.base + range.end]
    }
}

/// Part of one block: the bytes of the stream it holds.
struct Chunk {
    block: Block,
    /// First byte still held (earlier ones are acknowledged).
    start: usize,
    /// One past the last byte written.
    end: usize,
}

impl Chunk {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A connection's unacknowledged and unsent data, in reference-counted blocks.
pub struct SendBuffer {
    capacity: usize,
    /// Bytes held: unacknowledged plus unsent.
    len: usize,
    /// The stream, oldest first; offset 0 is the front chunk's `start`.
    chunks: VecDeque<Chunk>,
    /// Blocks no longer in the stream, to be reused once no packet holds them.
    spare: Vec<Block>,
    /// Size of every block.
    block_size: usize,
    /// Where in its block the next byte written goes: the stream offset of that byte
    /// modulo `block_size`. A byte's place in its block is always its stream offset modulo
    /// the block size, even in a block started after a shared one was sealed, so blocks
    /// stay aligned with the application's writes.
    tail_at: usize,
    /// Whether a block is lent out ([`lend`](Self::lend)): it counts among the buffer's
    /// blocks, and nothing else is written until it comes back, so the stream keeps the
    /// order of the writes.
    lending: bool,
}

/// A block of a [`SendBuffer`] lent to the application to fill with the next `len` bytes of
/// the stream, without the stack's lock held (see [`SendBuffer::lend`]); it goes back with
/// [`SendBuffer::put_back`], or unused with [`SendBuffer::give_back`].
pub struct LentBlock {
    block: Block,
    len: usize,
}

impl LentBlock {
    /// Copies the first [`len`](Self::len) bytes of `data` (all of it if shorter) into the
    /// block, and returns how many: the bytes [`SendBuffer::put_back`] appends.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        // Lent only while nothing else holds the block (`lend` checks), and nothing can
        // take a reference to it while it is lent, so `bytes_mut` finds it writable; were
        // it not, nothing would be copied and nothing appended.
        let n = match self.block.bytes_mut(self.len) {
            Some(bytes) => {
                let n = data.len().min(bytes.len());
                bytes[..n].copy_from_slice(&data[..n]);
                n
            }
            None => 0,
        };
        self.len = n;
        n
    }

    /// How many bytes the block takes: at most what was asked for, at most a block; after
    /// [`fill`](Self::fill), what it copied.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it takes none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for LentBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LentBlock").field("len", &self.len).finish()
    }
}

impl SendBuffer {
    /// An empty buffer that holds up to `capacity` bytes. Blocks of [`BLOCK`] bytes (or the
    /// power of two at or above `capacity`, if smaller) are allocated as data is written.
    pub fn new(capacity: usize) -> Self {
        SendBuffer::with_block_size(capacity, capacity.next_power_of_two().min(BLOCK))
    }

    /// An empty buffer of `capacity` bytes whose blocks hold `block_size` bytes (at least 1).
    pub fn with_block_size(capacity: usize, block_size: usize) -> Self {
        SendBuffer {
            capacity,
            len: 0,
            chunks: VecDeque::new(),
            spare: Vec::new(),
            block_size: block_size.max(1),
            tail_at: 0,
            lending: false,
        }
    }

    /// The blocks the buffer holds once it has been written to: enough for a full buffer's
    /// bytes at any alignment, plus [`PIN_MAX`] for blocks readers still hold.
    pub fn max_blocks(&self) -> usize {
        self.capacity.div_ceil(self.block_size) + 1 + PIN_MAX
    }

    /// Blocks that a packet or a reader holds besides this buffer.
    fn pinned(&self) -> usize {
        self.chunks.iter().filter(|c| c.block.is_shared()).count()
            + self.spare.iter().filter(|b| b.is_shared()).count()
    }

    /// Blocks held now, in the stream and spare together, and the one lent out.
    pub fn blocks(&self) -> usize {
        self.chunks.len() + self.spare.len() + usize::from(self.lending)
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held: unacknowledged plus unsent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held (everything written has been acknowledged).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left for [`write`](Self::write) (none while a block is lent out).
    pub fn free(&self) -> usize {
        if self.lending {
            return 0;
        }
        self.capacity - self.len
    }

    /// Whether a block is lent out ([`lend`](Self::lend)).
    pub fn is_lending(&self) -> bool {
        self.lending
    }

    /// Every block this buffer will ever need, at its first write (`blocks() == 0`): a
    /// connection that never sends allocates nothing, and one that does never allocates
    /// again. Out of line: it runs once per connection, and the check before it on every
    /// write.
    #[cold]
    fn allocate_blocks(&mut self) {
        self.chunks.reserve(self.max_blocks());
        self.spare.reserve(self.max_blocks());
        for _ in 0..self.max_blocks() {
            self.spare.push(self.new_block());
        }
    }

    /// Appends as much of `data` as fits and returns how many bytes were taken (fewer than
    /// `data.len()` when the buffer fills: the application must retry the rest later).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n > 0 && self.blocks() == 0 {
            self.allocate_blocks();
        }
        let mut rest = &data[..n];
        while !rest.is_empty() {
            if let Some(tail) = self.chunks.back_mut() {
                // The tail block takes more only while no packet shares it.
                if tail.end < self.block_size {
                    if let Some(bytes) = tail.block.bytes_mut(self.block_size) {
                        let k = rest.len().min(bytes.len() - tail.end);
                        bytes[tail.end..tail.end + k].copy_from_slice(&rest[..k]);
                        tail.end += k;
                        // `tail.end % bytes.len()`, without a division on every write:
                        // `tail.end` is at most the block's size.
                        self.tail_at = if tail.end == bytes.len() { 0 } else { tail.end };
                        rest = &rest[k..];
                        continue;
                    }
                }
            }
            let block = self.fresh_block();
            self.chunks.push_back(Chunk {
                block,
                start: self.tail_at,
                end: self.tail_at,
            });
        }
        self.len += n;
        n
    }

    /// Lends the block that the next write would start, for up to `want` bytes, so that the
    /// application can fill it without the stack's lock: a blocking socket's write then
    /// copies while the reader copies too (docs/benchmarks.md, item 33). `None` unless the
    /// next byte would go at the start of a block that nothing holds (the stream ends at a
    /// block boundary: a writer of whole blocks, such as 64 KiB writes), there is room,
    /// and no block is lent already; then [`write`](Self::write) is the way. While the
    /// block is out, the buffer takes no other write.
    pub fn lend(&mut self, want: usize) -> Option<LentBlock> {
        let n = want.min(self.free()).min(self.block_size);
        if n == 0 || self.tail_at != 0 {
            return None;
        }
        if self.blocks() == 0 {
            self.allocate_blocks();
        }
        let block = match self.chunks.back() {
            // The only chunk, all acknowledged and kept for the next write
            // (`retire_front`): its block is the one to lend.
            Some(tail) if tail.start == tail.end && !tail.block.is_shared() => {
                self.chunks.pop_back()?.block
            }
            // A tail with room would take the bytes; with `tail_at` 0 it has none, but a
            // shared one may sit anywhere in its block.
            Some(tail) if tail.end < self.block_size => return None,
            _ => self.fresh_block(),
        };
        self.lending = true;
        Some(LentBlock { block, len: n })
    }

    /// Appends a lent block's bytes, all [`LentBlock::len`] of them, to the stream.
    pub fn put_back(&mut self, lent: LentBlock) {
        if lent.len == 0 {
            // No chunk is ever empty but a kept one at the front (`retire_front`).
            return self.give_back(lent);
        }
        self.lending = false;
        self.len += lent.len;
        self.tail_at = lent.len % self.block_size;
        self.chunks.push_back(Chunk {
            block: lent.block,
            start: 0,
            end: lent.len,
        });
    }

    /// Takes a lent block back unused (its connection can no longer send).
    pub fn give_back(&mut self, lent: LentBlock) {
        self.lending = false;
        self.keep_spare(lent.block);
    }

    /// A block of the current size that nothing else holds: a spare one if one is free, a
    /// new one otherwise.
    fn fresh_block(&mut self) -> Block {
        // The first spare no reader pins.
        if let Some(i) = self.spare.iter().position(|b| !b.is_shared()) {
            return self.spare.swap_remove(i);
        }
        // Not reached while `share_at` keeps at most PIN_MAX blocks pinned (the stream then
        // has fewer blocks than it may, and the rest are free). Should it be, a pinned
        // spare is let go (its reader frees it) so that memory stays bounded.
        if self.blocks() >= self.max_blocks() && !self.spare.is_empty() {
            self.spare.remove(0);
        }
        self.new_block()
    }

    /// A newly allocated, zeroed block.
    fn new_block(&self) -> Block {
        Block::new(self.block_size)
    }

    /// The chunk holding the byte at `offset`, and where in its block that byte is.
    fn locate(&self, offset: usize) -> Option<(usize, usize)> {
        // Nearly always the front chunk: segments are built from SND.UNA or just after.
        let front = self.chunks.front()?;
        if offset < front.len() {
            return Some((0, front.start + offset));
        }
        let mut skipped = 0;
        for (i, c) in self.chunks.iter().enumerate() {
            if offset < skipped + c.len() {
                return Some((i, c.start + offset - skipped));
            }
            skipped += c.len();
        }
        None
    }

    /// Copies bytes starting at `offset` (0 is SND.UNA's byte) into `out` and returns how
    /// many: `min(out.len(), len - offset)`, or 0 if `offset >= len`. Nothing is consumed.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> usize {
        let Some((first, at)) = self.locate(offset) else {
            return 0;
        };
        let c = &self.chunks[first];
        if at + out.len() <= c.end {
            // All in one block, as every segment of a small exchange is: one copy.
            out.copy_from_slice(c.block.get(at..at + out.len()));
            return out.len();
        }
        let mut n = 0;
        for (i, c) in self.chunks.range(first..).enumerate() {
            if n == out.len() {
                break;
            }
            // The first chunk from `offset`, the later ones from their start.
            let from = if i == 0 { at } else { c.start };
            let k = (out.len() - n).min(c.end - from);
            out[n..n + k].copy_from_slice(c.block.get(from..from + k));
            n += k;
        }
        n
    }

    /// How many bytes from `offset` on lie in the same block, and whether a later block
    /// follows (so that a segment cut there is cut by a block boundary, not by a lack of
    /// data). `(0, false)` past the end.
    pub fn contiguous_at(&self, offset: usize) -> (usize, bool) {
        match self.locate(offset) {
            Some((i, at)) => (self.chunks[i].end - at, i + 1 < self.chunks.len()),
            None => (0, false),
        }
    }

    /// The block and the range in it holding the `len` bytes from `offset`, if they are
    /// worth sharing with a packet instead of copying: at least [`SHARE_MIN`] of them, in one
    /// block, which is either full or covered half by these bytes. Sharing seals the block
    /// (later bytes of its range go to a new block), so a block is shared only when that
    /// wastes little of it.
    pub fn share_at(&self, offset: usize, len: usize) -> Option<(&Arc<[u8]>, Range<usize>)> {
        if len < SHARE_MIN {
            return None;
        }
        let (i, at) = self.locate(offset)?;
        let c = &self.chunks[i];
        let size = self.block_size;
        let worth = c.end == size || 2 * len >= size;
        // A block shared already (a retransmission) pins nothing more; any other may be
        // shared while fewer than PIN_MAX are, so that a free block is always at hand for
        // the next write. Past that, a slow reader gets copies: slower, never a stall or an
        // allocation.
        let may_pin = c.block.is_shared() || self.pinned() < PIN_MAX;
        let base = c.block.base;
        (at + len <= c.end && worth && may_pin)
            .then_some((&c.block.bytes, base + at..base + at + len))
    }

    /// Drops `n` acknowledged bytes from the front (all of them if `n > len`).
    pub fn consume(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let k = n.min(front.len());
            front.start += k;
            n -= k;
            if front.start == front.end {
                self.retire_front();
            }
        }
    }

    /// The front chunk is all acknowledged: its block goes to `spare`, unless it is the only
    /// one and nothing shares it, in which case the next writes start over at its beginning.
    fn retire_front(&mut self) {
        if self.chunks.len() == 1 {
            if let Some(only) = self.chunks.front_mut() {
                if !only.block.is_shared() {
                    only.start = self.tail_at;
                    only.end = self.tail_at;
                    return;
                }
            }
        }
        if let Some(c) = self.chunks.pop_front() {
            self.keep_spare(c.block);
        }
    }

    fn keep_spare(&mut self, block: Block) {
        if self.blocks() < self.max_blocks() {
            self.spare.push(block);
        }
    }

    /// Drops everything held (a connection reset or aborted).
    pub fn clear(&mut self) {
        while let Some(c) = self.chunks.pop_front() {
            self.keep_spare(c.block);
        }
        self.len = 0;
        self.tail_at = 0;
    }
}

impl fmt::Debug for SendBuffer {
    /// Shows the layout, not the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBuffer")
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .field("spare", &self.spare.len())
            .field("block_size", &self.block_size)
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
    fn bytes_keep_their_stream_offset_in_their_block() {
        let mut b = SendBuffer::with_block_size(64, 8);
        b.write(b"abcde");
        b.consume(5);
        assert_eq!(b.chunks.len(), 1);
        b.write(b"12345678");
        // Stream offsets 5..13: the emptied block takes 5..8 at its offsets 5..8, a second
        // block 8..13 at its offsets 0..5.
        assert_eq!(b.chunks.len(), 2);
        assert_eq!((b.chunks[0].start, b.chunks[0].end), (5, 8));
        assert_eq!((b.chunks[1].start, b.chunks[1].end), (0, 5));
        let mut out = [0u8; 8];
        assert_eq!(b.read_at(0, &mut out), 8);
        assert_eq!(&out, b"12345678");
        // A sealed (shared) tail does not move the next bytes: they go to a new block at
        // the offsets they would have had.
        let pin = Arc::clone(&b.chunks[1].block.bytes);
        b.write(b"xy");
        assert_eq!((b.chunks[2].start, b.chunks[2].end), (5, 7));
        drop(pin);
    }

    #[test]
    fn full_blocks_are_shared_and_reused_once_let_go() {
        let mut b = SendBuffer::with_block_size(2 * SHARE_MIN, SHARE_MIN);
        let data: Vec<u8> = (0..2 * SHARE_MIN).map(|i| (i % 253) as u8).collect();
        assert_eq!(b.write(&data), 2 * SHARE_MIN);
        // The first block is full: its bytes can be shared, with no copy.
        let (block, range) = b.share_at(0, SHARE_MIN).unwrap();
        assert_eq!(&block[range.clone()], &data[..SHARE_MIN]);
        let held = Arc::clone(block);
        // Not across a block boundary, nor fewer than SHARE_MIN bytes.
        assert!(b.share_at(1, SHARE_MIN).is_none());
        assert!(b.share_at(0, SHARE_MIN - 1).is_none());
        assert_eq!(b.contiguous_at(1), (SHARE_MIN - 1, true));
        assert_eq!(b.contiguous_at(SHARE_MIN), (SHARE_MIN, false));
        // Acknowledged while a packet still holds it: kept spare, not written into.
        b.consume(SHARE_MIN);
        assert!(b.spare.iter().any(|s| Arc::ptr_eq(&s.bytes, &held)));
        b.consume(SHARE_MIN);
        assert_eq!(b.write(&data[..10]), 10);
        let mut out = [0u8; 10];
        assert_eq!(b.read_at(0, &mut out), 10);
        assert_eq!(&out, &data[..10]);
        assert_eq!(
            &held[..SHARE_MIN],
            &data[..SHARE_MIN],
            "a shared block is never written"
        );
        // Once the packet lets go, the block is reused: no new allocation.
        drop(held);
        assert_eq!(b.write(&data[..2 * SHARE_MIN - 10]), 2 * SHARE_MIN - 10);
        assert_eq!(b.blocks(), b.max_blocks());
    }

    #[test]
    fn a_shared_tail_is_sealed_and_writes_go_to_a_new_block() {
        let mut b = SendBuffer::with_block_size(8 * SHARE_MIN, 4 * SHARE_MIN);
        b.write(&[1u8; SHARE_MIN]);
        // Neither full nor half covered: not offered for sharing.
        assert!(b.share_at(0, SHARE_MIN).is_none());
        b.write(&[1u8; SHARE_MIN]);
        let b0 = b
            .share_at(0, 2 * SHARE_MIN)
            .map(|(block, r)| block[r].to_vec());
        assert_eq!(
            b0,
            Some(vec![1u8; 2 * SHARE_MIN]),
            "half covered: worth sealing"
        );
        b.consume(SHARE_MIN);
        // A holder of the tail block (as a packet would be) makes it read-only.
        let pin = Arc::clone(&b.chunks[0].block.bytes);
        let base = b.chunks[0].block.base;
        b.write(&[2u8; 4]);
        assert_eq!(b.chunks.len(), 2);
        assert_eq!(
            &pin[base + 2 * SHARE_MIN..base + 2 * SHARE_MIN + 4],
            &[0u8; 4]
        );
        let mut out = [0u8; 6];
        assert_eq!(b.read_at(SHARE_MIN - 2, &mut out), 6);
        assert_eq!(out, [1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn at_most_pin_max_blocks_are_shared_and_none_is_allocated_later() {
        let mut b = SendBuffer::with_block_size(2 * SHARE_MIN, SHARE_MIN);
        let mut pins = Vec::new();
        for round in 0..50 {
            assert_eq!(b.write(&[7u8; SHARE_MIN]), SHARE_MIN);
            match b.share_at(0, SHARE_MIN) {
                Some((block, _)) => pins.push(Arc::clone(block)),
                // Readers hold PIN_MAX blocks already: the segment would be copied.
                None => assert_eq!(pins.len(), PIN_MAX, "round {round}"),
            }
            b.consume(SHARE_MIN);
            assert_eq!(
                b.blocks(),
                b.max_blocks(),
                "round {round}: no block added or lost"
            );
        }
        // The readers let go: sharing resumes.
        pins.clear();
        b.write(&[8u8; SHARE_MIN]);
        assert!(b.share_at(0, SHARE_MIN).is_some());
    }

    #[test]
    fn large_blocks_start_half_a_page_in_wherever_they_were_allocated() {
        // Whatever addresses the allocator hands out, every block of 4 KiB or more puts its
        // first byte at BLOCK_PAGE_OFFSET modulo 4 KiB, so a shared range's address modulo
        // 4 KiB follows from its stream offset alone.
        let mut b = SendBuffer::new(4 * BLOCK);
        let data = vec![3u8; 4 * BLOCK];
        assert_eq!(b.write(&data), 4 * BLOCK);
        for block in b.chunks.iter().map(|c| &c.block).chain(&b.spare) {
            let first = block.bytes.as_ptr() as usize + block.base;
            assert_eq!(first % 4096, BLOCK_PAGE_OFFSET);
            assert!(block.base + BLOCK <= block.bytes.len());
        }
        for offset in [0, BLOCK, 2 * BLOCK + 100] {
            let (block, range) = b.share_at(offset, SHARE_MIN).unwrap();
            let at = block[range].as_ptr() as usize;
            assert_eq!(
                at % 4096,
                (BLOCK_PAGE_OFFSET + offset) % 4096,
                "offset {offset}"
            );
        }
        // Small blocks are not padded.
        let mut small = SendBuffer::new(100);
        small.write(b"x");
        assert_eq!(small.chunks[0].block.bytes.len(), 128);
    }

    #[test]
    fn blocks_are_a_power_of_two_up_to_block() {
        assert_eq!(SendBuffer::new(1 << 20).block_size, BLOCK);
        assert_eq!(SendBuffer::new(BLOCK).block_size, BLOCK);
        assert_eq!(SendBuffer::new(5000).block_size, 8192);
        assert_eq!(SendBuffer::new(0).block_size, 1);
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
        let mut b = SendBuffer::with_block_size(37, 5);
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

    /// A block is lent only when the stream ends at a block boundary, is filled outside,
    /// and comes back as the next bytes of the stream; meanwhile the buffer takes nothing
    /// else, and its blocks stay the same in number.
    #[test]
    fn a_lent_block_comes_back_as_the_next_bytes() {
        let mut b = SendBuffer::with_block_size(64, 16);
        assert_eq!(b.write(b"0123456789abcdef"), 16, "one whole block");
        let blocks = b.blocks();
        let mut lent = b.lend(40).expect("at a block boundary");
        assert_eq!(lent.len(), 16, "at most a block");
        assert!(b.is_lending());
        assert_eq!(b.free(), 0, "nothing else is written meanwhile");
        assert_eq!(b.write(b"x"), 0);
        assert!(b.lend(1).is_none(), "one block out at a time");
        assert_eq!(b.blocks(), blocks, "the lent block still counts");
        assert_eq!(lent.fill(b"ghijklmnopqrstuvwxyz"), 16);
        b.put_back(lent);
        assert!(!b.is_lending());
        assert_eq!((b.len(), b.free()), (32, 32));
        let mut out = [0u8; 32];
        assert_eq!(b.read_at(0, &mut out), 32);
        assert_eq!(&out, b"0123456789abcdefghijklmnopqrstuv");
        // A short fill appends only what it copied; the stream then ends mid-block, and
        // the next write copies as before.
        let mut lent = b.lend(16).expect("at a block boundary again");
        assert_eq!(lent.fill(b"WXYZ"), 4);
        b.put_back(lent);
        assert_eq!(b.len(), 36);
        assert!(b.lend(16).is_none(), "mid-block: write, not lend");
        assert_eq!(b.write(b"!"), 1);
        let mut tail = [0u8; 5];
        assert_eq!(b.read_at(32, &mut tail), 5);
        assert_eq!(&tail, b"WXYZ!");
        assert_eq!(b.blocks(), blocks);
    }

    /// A lent block given back unused leaves the stream as it was, and the block among the
    /// spares; a buffer emptied by acknowledgment lends the block it kept.
    #[test]
    fn a_lent_block_given_back_changes_nothing() {
        let mut b = SendBuffer::with_block_size(32, 16);
        let lent = b.lend(8).expect("an empty buffer is at a boundary");
        let blocks = b.blocks();
        b.give_back(lent);
        assert_eq!((b.len(), b.free(), b.blocks()), (0, 32, blocks));
        assert_eq!(b.write(b"0123456789abcdef"), 16);
        b.consume(16);
        let mut lent = b.lend(16).expect("the kept block");
        assert_eq!(b.blocks(), blocks, "no block taken from elsewhere");
        lent.fill(b"ABCDEFGHIJKLMNOP");
        b.put_back(lent);
        let mut out = [0u8; 16];
        assert_eq!(b.read_at(0, &mut out), 16);
        assert_eq!(&out, b"ABCDEFGHIJKLMNOP");
    }
}
