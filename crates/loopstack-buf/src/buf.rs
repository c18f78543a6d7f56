//! The packet handle: a window `start..end` onto one pooled buffer.

use std::fmt;
use std::ops::{Deref, DerefMut, Range};
use std::sync::Arc;

use crate::error::{BufError, PoolError};
use crate::pool::{Inner, PacketPool};

/// One packet in one pooled buffer.
///
/// The packet is the window `start..end` of the buffer's storage. Layers going down
/// [`prepend`](Self::prepend) their headers into the headroom in front of the window; layers
/// going up [`strip_front`](Self::strip_front) them. Neither moves a byte of payload.
///
/// Dropping the handle returns the storage to its pool, from any thread. Bytes exposed by
/// [`prepend`](Self::prepend) and [`append`](Self::append) are zeroed first, so no byte of an
/// earlier packet can leak into a new one (and captures stay reproducible).
///
/// The handle is one pointer wide: the window and the way home live in the buffer's slot,
/// which the pool allocated once, with the buffer. A packet is moved by value at every layer
/// boundary (into the ring, out of it, into a socket queue), and an 8-byte move is one
/// register. The 48-byte handle this replaced was copied through memory at each of them,
/// and reading those copies back stalled on store forwarding (docs/benchmarks.md).
pub struct PacketBuf {
    /// Always `Some` until `drop` hands the slot back to the pool. `Option<Box<_>>` is one
    /// pointer wide (`None` is the null pointer), and taking the box out in `drop` needs
    /// neither `unsafe` nor a placeholder allocation.
    slot: Option<Box<Slot>>,
}

/// One buffer of the pool and, while it is out, the window of the packet in it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Headroom + capacity bytes, allocated when the pool was built.
    storage: Box<[u8]>,
    start: usize,
    end: usize,
    class: usize,
    /// The pool, held only while the buffer is out: a free buffer holding its pool would
    /// keep the pool alive for ever (the pool holds its free buffers).
    pool: Option<Arc<Inner>>,
    /// Shared, read-only bytes that follow the window, if a layer attached some
    /// ([`PacketBuf::attach`]). Always `None` while the slot is free, and never an empty
    /// range: a fragment stripped or cut to nothing is let go.
    frag: Option<Frag>,
    /// The length of `frag`, 0 without one; written only by [`Slot::set_frag`] and
    /// [`Slot::sync_frag_len`]. Every packet's length (`PacketBuf::len`) and tailroom ask
    /// it, several times per packet on every layer's path; reading one plain field beside
    /// `start` and `end` costs less than looking into the `Option` each time
    /// (docs/benchmarks.md, item 39).
    frag_len: usize,
}

/// Bytes owned elsewhere that a packet carries after the bytes in its own buffer: TCP's
/// payload, shared with the send queue that must keep it until it is acknowledged.
///
/// Linux calls these paged fragments of an `skb`. The block is reference counted and never
/// written while shared: its owner writes into it only when `Arc::get_mut` says no packet
/// holds it any more, which is what lets the sharing stay free of `unsafe`.
#[derive(Debug, Clone)]
struct Frag {
    block: Arc<[u8]>,
    start: usize,
    end: usize,
}

impl Frag {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn bytes(&self) -> &[u8] {
        &self.block[self.start..self.end]
    }
}

impl Slot {
    /// A free slot of `size` bytes in size class `class`.
    pub(crate) fn new(class: usize, size: usize) -> Box<Self> {
        Box::new(Slot {
            storage: vec![0u8; size].into_boxed_slice(),
            start: 0,
            end: 0,
            class,
            pool: None,
            frag: None,
            frag_len: 0,
        })
    }

    /// The size class the slot belongs to.
    pub(crate) fn class(&self) -> usize {
        self.class
    }

    /// Takes the slot's reference to its pool out, as a slot going back on the free list
    /// must not hold one.
    pub(crate) fn take_pool(&mut self) -> Option<Arc<Inner>> {
        self.pool.take()
    }

    /// Bytes in the window (the attached fragment not included).
    #[inline]
    fn len(&self) -> usize {
        self.end - self.start
    }

    /// Free bytes behind the window; none while a fragment follows it, since bytes written
    /// there would land in front of the fragment's.
    #[inline]
    fn tailroom(&self) -> usize {
        if self.frag_len != 0 {
            0
        } else {
            self.storage.len() - self.end
        }
    }

    /// Attaches `frag`, or lets the attached one go (`None`, or an empty range).
    fn set_frag(&mut self, frag: Option<Frag>) {
        self.frag = frag;
        self.sync_frag_len();
    }

    /// Lets the fragment go (a slot going back to its pool). Inline: on the way back the
    /// slot nearly never has one, and the test is all it costs then.
    #[inline]
    fn drop_frag(&mut self) {
        if self.frag.is_some() {
            self.set_frag(None);
        }
    }

    /// Brings `frag_len` up to date after `frag`'s range changed in place, and lets a
    /// fragment that became empty go.
    fn sync_frag_len(&mut self) {
        if self.frag.as_ref().is_some_and(|f| f.len() == 0) {
            self.frag = None;
        }
        self.frag_len = self.frag.as_ref().map_or(0, Frag::len);
    }
}

impl PacketBuf {
    /// Hands out `slot`, just taken from `pool`'s free list, as an empty packet with the
    /// pool's headroom in front of it.
    pub(crate) fn new(pool: Arc<Inner>, mut slot: Box<Slot>) -> Self {
        let start = pool.headroom.min(slot.storage.len());
        slot.start = start;
        slot.end = start;
        slot.pool = Some(pool);
        PacketBuf { slot: Some(slot) }
    }

    /// Hands out a slot from a [`PoolCache`](crate::PoolCache)'s stock, which still holds
    /// its pool, as an empty packet with `headroom` in front of it.
    #[inline]
    pub(crate) fn reuse(mut slot: Box<Slot>, headroom: usize) -> Self {
        debug_assert!(slot.pool.is_some() && slot.frag.is_none() && slot.frag_len == 0);
        let start = headroom.min(slot.storage.len());
        slot.start = start;
        slot.end = start;
        PacketBuf { slot: Some(slot) }
    }

    /// The buffer's slot, for a cache's stock: still holding its pool, with no fragment.
    /// Refused (the buffer given back) if the buffer is not from `pool`.
    #[inline]
    pub(crate) fn into_slot_of(mut self, pool: &Arc<Inner>) -> Result<Box<Slot>, PacketBuf> {
        if !Arc::ptr_eq(self.inner(), pool) {
            return Err(self);
        }
        let mut slot = self.slot.take().expect("a live PacketBuf has its slot");
        // A free slot must not keep a sender's block alive (as in `drop`).
        slot.drop_frag();
        Ok(slot)
    }

    /// The size class of the buffer.
    #[inline]
    pub(crate) fn class(&self) -> usize {
        self.slot().class
    }

    #[inline]
    fn slot(&self) -> &Slot {
        // Taken out only by `drop`, after which no method can run.
        self.slot.as_deref().expect("a live PacketBuf has its slot")
    }

    #[inline]
    fn slot_mut(&mut self) -> &mut Slot {
        self.slot
            .as_deref_mut()
            .expect("a live PacketBuf has its slot")
    }

    #[inline]
    fn inner(&self) -> &Arc<Inner> {
        self.slot()
            .pool
            .as_ref()
            .expect("a slot that is out holds its pool")
    }

    /// Length of the packet in bytes, the [attached fragment](Self::attach) included.
    #[inline]
    pub fn len(&self) -> usize {
        let s = self.slot();
        s.len() + s.frag_len
    }

    /// Whether the packet has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packet's bytes in its own buffer: all of them, unless a fragment is
    /// [attached](Self::attach), whose bytes ([`frag`](Self::frag)) follow these.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        let s = self.slot();
        &s.storage[s.start..s.end]
    }

    /// The bytes of [`as_slice`](Self::as_slice), writable (a layer fixing up a checksum, a
    /// fault injector flipping a bit).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let s = self.slot_mut();
        &mut s.storage[s.start..s.end]
    }

    /// Whether all the packet's bytes are in its own buffer, that is whether
    /// [`as_slice`](Self::as_slice) is the whole packet.
    #[inline]
    pub fn is_linear(&self) -> bool {
        self.slot().frag_len == 0
    }

    /// The bytes of the attached fragment, which follow [`as_slice`](Self::as_slice); empty
    /// if there is none.
    #[inline]
    pub fn frag(&self) -> &[u8] {
        self.slot().frag.as_ref().map_or(&[], Frag::bytes)
    }

    /// Attaches `block[range]` behind the packet's bytes without copying it: the packet then
    /// holds a reference to `block`, which its owner must not write until every packet
    /// holding it is gone (`Arc::get_mut` tells). An empty range attaches nothing.
    ///
    /// Only devices that declare scatter-gather carry such a packet as it is; the internet
    /// layer copies it into one buffer ([`linearize`](Self::linearize)) for any other.
    ///
    /// # Errors
    /// [`BufError::FragmentRefused`] if a fragment is already attached or `range` is not
    /// inside `block`; the packet is unchanged.
    pub fn attach(&mut self, block: &Arc<[u8]>, range: Range<usize>) -> Result<(), BufError> {
        let s = self.slot_mut();
        if s.frag.is_some() || range.start > range.end || range.end > block.len() {
            return Err(BufError::FragmentRefused);
        }
        if !range.is_empty() {
            s.set_frag(Some(Frag {
                block: Arc::clone(block),
                start: range.start,
                end: range.end,
            }));
        }
        Ok(())
    }

    /// Copies the attached fragment, if any, into a buffer of the packet's pool, so that the
    /// whole packet is in [`as_slice`](Self::as_slice) again. Uses this buffer's tailroom if
    /// it is large enough, a new buffer from the pool otherwise.
    ///
    /// # Errors
    /// The pool's error if it has no buffer for the whole packet; the packet is unchanged.
    pub fn linearize(&mut self) -> Result<(), PoolError> {
        let Some(frag) = self.slot().frag.clone() else {
            return Ok(());
        };
        let s = self.slot_mut();
        if s.storage.len() - s.end >= frag.len() {
            s.storage[s.end..s.end + frag.len()].copy_from_slice(frag.bytes());
            s.end += frag.len();
            s.set_frag(None);
            return Ok(());
        }
        let inner = Arc::clone(self.inner());
        let total = self.len();
        let class = inner.class_for(total)?;
        let mut whole = PacketBuf::new(Arc::clone(&inner), inner.take(class)?);
        let head = self.as_slice();
        let w = whole.slot_mut();
        w.storage[w.end..w.end + head.len()].copy_from_slice(head);
        w.storage[w.end + head.len()..w.end + total].copy_from_slice(frag.bytes());
        w.end += total;
        *self = whole;
        Ok(())
    }

    /// Copies the packet's bytes from `offset` on, its own and then the fragment's, into
    /// `out`; returns how many (`min(out.len(), len - offset)`, 0 past the end).
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> usize {
        let head = self.as_slice();
        let frag = self.frag();
        let mut n = 0;
        if offset < head.len() {
            n = out.len().min(head.len() - offset);
            out[..n].copy_from_slice(&head[offset..offset + n]);
        }
        let offset = offset.saturating_sub(head.len());
        if n < out.len() && offset < frag.len() {
            let m = (out.len() - n).min(frag.len() - offset);
            out[n..n + m].copy_from_slice(&frag[offset..offset + m]);
            n += m;
        }
        n
    }

    /// Free bytes in front of the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.slot().start
    }

    /// Free bytes behind the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.slot().tailroom()
    }

    /// Size of the underlying storage: headroom + packet + tailroom.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slot().storage.len()
    }

    /// Grows the packet by `n` bytes at the front, in the headroom, and returns them (zeroed)
    /// for the caller to write a header into.
    // Inlined so that the zeroing of a header whose size the caller knows (8, 20, 40 bytes)
    // becomes a few stores instead of a call to `memset`.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let s = self.slot_mut();
        if n > s.start {
            return Err(BufError::NoHeadroom {
                needed: n,
                available: s.start,
            });
        }
        s.start -= n;
        let front = &mut s.storage[s.start..s.start + n];
        front.fill(0);
        Ok(front)
    }

    /// [`prepend`](Self::prepend) of a header whose size is a constant: the bytes come back
    /// as an array, so writing the header's fields needs no bounds check even where this
    /// call is not inlined (with a slice, the IP layer's header writes cost a check each,
    /// about 20 instructions per packet; docs/benchmarks.md, item 18).
    #[inline]
    pub fn prepend_array<const N: usize>(&mut self) -> Result<&mut [u8; N], BufError> {
        let available = self.headroom();
        // `prepend(N)` gives exactly N bytes, so the conversion cannot fail; were it ever
        // to, the caller gets the error it handles anyway rather than a panic.
        self.prepend(N)?
            .first_chunk_mut::<N>()
            .ok_or(BufError::NoHeadroom {
                needed: N,
                available,
            })
    }

    /// The `N` bytes just in front of the packet, in its headroom, for the layer that holds
    /// the packet in a queue to keep a note about it there (what Linux's `skb->cb` is for);
    /// `None` if the headroom is shorter. They are not part of the packet: the next
    /// [`prepend`](Self::prepend) or [`unstrip_front`](Self::unstrip_front) covers them.
    ///
    /// UDP keeps a queued datagram's sender this way. Kept beside the packet instead, the
    /// address was built from its parts and copied at once into the queue as a whole, a
    /// store-forwarding stall (docs/benchmarks.md, item 23).
    #[inline]
    pub fn note_mut<const N: usize>(&mut self) -> Option<&mut [u8; N]> {
        let s = self.slot_mut();
        let at = s.start.checked_sub(N)?;
        s.storage.get_mut(at..s.start)?.first_chunk_mut::<N>()
    }

    /// The note [`note_mut`](Self::note_mut) wrote: the `N` bytes in front of the packet.
    #[inline]
    pub fn note<const N: usize>(&self) -> Option<&[u8; N]> {
        let s = self.slot();
        let at = s.start.checked_sub(N)?;
        s.storage.get(at..s.start)?.first_chunk::<N>()
    }

    /// Prepends a copy of `bytes` (a header already serialised elsewhere).
    pub fn prepend_slice(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        let s = self.slot_mut();
        if bytes.len() > s.start {
            return Err(BufError::NoHeadroom {
                needed: bytes.len(),
                available: s.start,
            });
        }
        s.start -= bytes.len();
        s.storage[s.start..s.start + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    /// Removes `n` bytes from the front of the packet (a header the layer has consumed). The
    /// bytes become headroom again.
    ///
    /// Past the bytes in the packet's own buffer, it strips from the attached fragment; a
    /// fragment stripped to nothing is let go.
    // Inline for the common case, a header within the packet's own bytes: each layer on
    // the way up strips one, and the call cost more than the work (docs/benchmarks.md,
    // item 22). Reaching into a fragment is out of line.
    #[inline]
    pub fn strip_front(&mut self, n: usize) -> Result<(), BufError> {
        let s = self.slot_mut();
        if n <= s.len() {
            s.start += n;
            return Ok(());
        }
        self.strip_into_frag(n)
    }

    /// [`strip_front`](Self::strip_front) past the packet's own bytes.
    fn strip_into_frag(&mut self, n: usize) -> Result<(), BufError> {
        let s = self.slot_mut();
        let own = s.len();
        let rest = n.saturating_sub(own);
        match &mut s.frag {
            Some(f) if rest <= f.len() => {
                f.start += rest;
                s.start = s.end;
                s.sync_frag_len();
                Ok(())
            }
            f => Err(BufError::TooShort {
                needed: n,
                len: own + f.as_ref().map_or(0, Frag::len),
            }),
        }
    }

    /// Undoes [`strip_front`](Self::strip_front): grows the packet by `n` bytes at the front
    /// *without* touching them, so a header stripped earlier is part of the packet again.
    /// The internet layer uses it to quote the whole offending packet in an ICMP error after
    /// the transport layer has found no socket for it (RFC 792, RFC 4443 2.4(c)).
    ///
    /// Only meaningful right after a strip of at least `n` bytes: otherwise the bytes are
    /// whatever the headroom holds (zeroes, or an older header).
    pub fn unstrip_front(&mut self, n: usize) -> Result<(), BufError> {
        let s = self.slot_mut();
        if n > s.start {
            return Err(BufError::NoHeadroom {
                needed: n,
                available: s.start,
            });
        }
        s.start -= n;
        Ok(())
    }

    /// Shortens the packet to `len` bytes, keeping the front (an IP layer dropping link
    /// padding past the IP total length). Does nothing if the packet is already that short.
    // Inline for the common case, as `strip_front` is: no fragment to shorten or let go.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        let s = self.slot_mut();
        if s.frag_len == 0 {
            s.end = s.start + len.min(s.len());
            return;
        }
        self.truncate_with_frag(len);
    }

    /// [`truncate`](Self::truncate) of a packet with an attached fragment.
    fn truncate_with_frag(&mut self, len: usize) {
        let s = self.slot_mut();
        let own = s.len();
        if len <= own {
            s.end = s.start + len;
            s.set_frag(None);
        } else if let Some(f) = &mut s.frag {
            f.end = f.end.min(f.start + (len - own));
            s.sync_frag_len();
        }
    }

    /// Grows the packet by `n` zeroed bytes at the back and returns them.
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let s = self.slot_mut();
        let tailroom = s.tailroom();
        if n > tailroom {
            return Err(BufError::NoTailroom {
                needed: n,
                available: tailroom,
            });
        }
        let old_end = s.end;
        s.end += n;
        let back = &mut s.storage[old_end..s.end];
        back.fill(0);
        Ok(back)
    }

    /// Appends a copy of `bytes` at the back of the packet.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        let s = self.slot_mut();
        let tailroom = s.tailroom();
        if bytes.len() > tailroom {
            return Err(BufError::NoTailroom {
                needed: bytes.len(),
                available: tailroom,
            });
        }
        s.storage[s.end..s.end + bytes.len()].copy_from_slice(bytes);
        s.end += bytes.len();
        Ok(())
    }

    /// The free bytes behind the packet, for a device to read a frame into directly. Their
    /// contents are unspecified; call [`commit_tailroom`](Self::commit_tailroom) with the
    /// number of bytes written to make them part of the packet.
    pub fn tailroom_mut(&mut self) -> &mut [u8] {
        let s = self.slot_mut();
        let end = s.end + s.tailroom();
        &mut s.storage[s.end..end]
    }

    /// Makes the first `n` bytes of the tailroom part of the packet (after a device wrote
    /// them through [`tailroom_mut`](Self::tailroom_mut)).
    pub fn commit_tailroom(&mut self, n: usize) -> Result<(), BufError> {
        let s = self.slot_mut();
        let tailroom = s.tailroom();
        if n > tailroom {
            return Err(BufError::NoTailroom {
                needed: n,
                available: tailroom,
            });
        }
        s.end += n;
        Ok(())
    }

    /// Empties the packet and restores the pool's full headroom, for reuse of the buffer.
    pub fn clear(&mut self) {
        let headroom = self.inner().headroom;
        let s = self.slot_mut();
        s.start = headroom.min(s.storage.len());
        s.end = s.start;
        s.set_frag(None);
    }

    /// A second buffer from the same pool and class holding a copy of this packet at the same
    /// offset (so it has the same headroom). Used to duplicate packets, which is rare: every
    /// ordinary path moves the handle instead.
    pub fn try_clone(&self) -> Result<PacketBuf, PoolError> {
        let s = self.slot();
        let inner = self.inner();
        let mut copy = PacketBuf::new(Arc::clone(inner), inner.take(s.class)?);
        let c = copy.slot_mut();
        c.start = s.start;
        c.end = s.end;
        c.storage[s.start..s.end].copy_from_slice(&s.storage[s.start..s.end]);
        c.set_frag(s.frag.clone());
        Ok(copy)
    }

    /// A handle to the pool this buffer belongs to (and will return to).
    pub fn pool(&self) -> PacketPool {
        PacketPool::from_inner(Arc::clone(self.inner()))
    }

    /// Whether this buffer came from `pool`.
    pub fn is_from(&self, pool: &PacketPool) -> bool {
        Arc::ptr_eq(self.inner(), pool.inner())
    }
}

impl Drop for PacketBuf {
    // Inline, with the release out of line: where a cache has just taken the slot out
    // (`PoolCache::recycle`), the compiler sees an empty handle and drops nothing, instead
    // of calling this to find that out (docs/benchmarks.md, item 22).
    #[inline]
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            release(slot);
        }
    }
}

/// Gives a dropped packet's slot back to its pool's free list.
fn release(mut slot: Box<Slot>) {
    // A free slot must not keep a sender's block alive.
    slot.drop_frag();
    if let Some(pool) = slot.pool.take() {
        pool.release(slot);
    }
}

impl Deref for PacketBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for PacketBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for PacketBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsMut<[u8]> for PacketBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl fmt::Debug for PacketBuf {
    /// Shows the layout, not the bytes: packets can be 64 KiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketBuf")
            .field("len", &self.len())
            .field("frag", &self.slot().frag_len)
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .field("class", &self.slot().class)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PoolConfig, SizeClass};

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig {
            headroom: 8,
            classes: vec![SizeClass {
                capacity: 16,
                count: 2,
            }],
        })
        .unwrap()
    }

    #[test]
    fn prepend_and_strip_move_only_the_window() {
        let p = pool();
        let mut b = p.alloc_from_slice(b"data").unwrap();
        assert_eq!((b.headroom(), b.len(), b.tailroom()), (8, 4, 12));
        b.prepend(3).unwrap().copy_from_slice(b"hdr");
        assert_eq!(b.as_slice(), b"hdrdata");
        b.prepend_slice(b"L2").unwrap();
        assert_eq!(b.as_slice(), b"L2hdrdata");
        assert_eq!(b.headroom(), 3);
        b.strip_front(2).unwrap();
        b.strip_front(3).unwrap();
        assert_eq!(b.as_slice(), b"data");
        assert_eq!(b.headroom(), 8);
    }

    #[test]
    fn refused_edits_leave_the_buffer_unchanged() {
        let p = pool();
        let mut b = p.alloc_from_slice(b"abc").unwrap();
        assert_eq!(
            b.prepend(9).unwrap_err(),
            BufError::NoHeadroom {
                needed: 9,
                available: 8
            }
        );
        assert_eq!(
            b.prepend_slice(&[0; 9]).unwrap_err(),
            BufError::NoHeadroom {
                needed: 9,
                available: 8
            }
        );
        assert_eq!(
            b.strip_front(4).unwrap_err(),
            BufError::TooShort { needed: 4, len: 3 }
        );
        assert_eq!(
            b.append(14).unwrap_err(),
            BufError::NoTailroom {
                needed: 14,
                available: 13
            }
        );
        assert_eq!(
            b.extend_from_slice(&[1; 14]).unwrap_err(),
            BufError::NoTailroom {
                needed: 14,
                available: 13
            }
        );
        assert_eq!(
            b.commit_tailroom(14).unwrap_err(),
            BufError::NoTailroom {
                needed: 14,
                available: 13
            }
        );
        assert_eq!(b.as_slice(), b"abc");
        assert_eq!(b.headroom(), 8);
    }

    #[test]
    fn exposed_bytes_are_zeroed_even_after_reuse() {
        let p = PacketPool::new(PoolConfig {
            headroom: 4,
            classes: vec![SizeClass {
                capacity: 8,
                count: 1,
            }],
        })
        .unwrap();
        let mut b = p.alloc_from_slice(&[0xFF; 8]).unwrap();
        b.prepend_slice(&[0xEE; 4]).unwrap();
        drop(b);
        // The same storage comes back (the class has one buffer) with old bytes in it.
        let mut b = p.alloc(8).unwrap();
        assert_eq!(b.append(8).unwrap(), &[0u8; 8]);
        assert_eq!(b.prepend(4).unwrap(), &[0u8; 4]);
    }

    #[test]
    fn prepend_array_is_prepend_with_the_size_in_the_type() {
        let p = PacketPool::new(PoolConfig {
            headroom: 6,
            classes: vec![SizeClass {
                capacity: 8,
                count: 1,
            }],
        })
        .unwrap();
        // Old bytes in the headroom, from a previous use of the same storage.
        let mut b = p.alloc_from_slice(b"data").unwrap();
        b.prepend_slice(&[0xEE; 6]).unwrap();
        drop(b);
        let mut b = p.alloc_from_slice(b"data").unwrap();
        let h: &mut [u8; 4] = b.prepend_array().unwrap();
        assert_eq!(h, &[0; 4], "zeroed, like prepend");
        h.copy_from_slice(b"hdr:");
        assert_eq!((b.as_slice(), b.headroom()), (&b"hdr:data"[..], 2));
        // Too little headroom: the error prepend gives, and the packet is unchanged.
        assert_eq!(
            b.prepend_array::<3>().unwrap_err(),
            BufError::NoHeadroom {
                needed: 3,
                available: 2
            }
        );
        assert_eq!((b.as_slice(), b.headroom()), (&b"hdr:data"[..], 2));
        b.prepend_array::<2>().unwrap();
        assert_eq!(b.as_slice(), b"\0\0hdr:data");
    }

    #[test]
    fn unstrip_restores_a_stripped_header() {
        let p = pool();
        let mut b = p.alloc_from_slice(b"payload").unwrap();
        b.prepend_slice(b"HDR").unwrap();
        b.strip_front(3).unwrap();
        assert_eq!(b.as_slice(), b"payload");
        b.unstrip_front(3).unwrap();
        assert_eq!(b.as_slice(), b"HDRpayload");
        assert_eq!(
            b.unstrip_front(6).unwrap_err(),
            BufError::NoHeadroom {
                needed: 6,
                available: 5
            }
        );
    }

    #[test]
    fn a_note_sits_in_the_headroom_outside_the_packet() {
        let p = pool();
        let mut b = p.alloc_from_slice(b"payload").unwrap();
        b.prepend_slice(b"HDR").unwrap();
        b.strip_front(3).unwrap();
        // Written over the stripped header, just in front of the packet.
        *b.note_mut::<4>().unwrap() = *b"note";
        assert_eq!(b.as_slice(), b"payload");
        assert_eq!(b.note::<4>(), Some(b"note"));
        assert_eq!(b.note::<2>(), Some(b"te"), "the bytes nearest the packet");
        // As long as the headroom (8 bytes), and no longer.
        assert!(b.note_mut::<8>().is_some());
        assert!(b.note_mut::<9>().is_none());
        assert!(b.note::<9>().is_none());
        // A prepend takes the bytes back into the packet.
        b.prepend(2).unwrap();
        assert_eq!(b.as_slice(), b"\0\0payload");
        assert_eq!(b.note::<7>(), None, "6 bytes of headroom left");
        assert_eq!(b.note::<2>(), Some(b"no"));
    }

    #[test]
    fn truncate_keeps_the_front() {
        let p = pool();
        let mut b = p.alloc_from_slice(b"abcdef").unwrap();
        b.truncate(10);
        assert_eq!(b.len(), 6);
        b.truncate(2);
        assert_eq!(b.as_slice(), b"ab");
        b.truncate(0);
        assert!(b.is_empty());
    }

    #[test]
    fn tailroom_write_then_commit() {
        let p = pool();
        let mut b = p.alloc(16).unwrap();
        b.tailroom_mut()[..5].copy_from_slice(b"frame");
        b.commit_tailroom(5).unwrap();
        assert_eq!(&b[..], b"frame");
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.headroom(), 8);
    }

    #[test]
    fn clone_is_a_second_buffer_with_same_layout() {
        let p = pool();
        let mut a = p.alloc_from_slice(b"xyz").unwrap();
        a.prepend_slice(b"h").unwrap();
        let mut c = a.try_clone().unwrap();
        assert_eq!(c.as_slice(), b"hxyz");
        assert_eq!(c.headroom(), a.headroom());
        c.as_mut_slice()[0] = b'H';
        assert_eq!(a.as_slice(), b"hxyz");
        assert_eq!(p.stats().in_use(), 2);
        // The class has two buffers: a third copy is refused, not allocated.
        assert!(matches!(a.try_clone(), Err(PoolError::Exhausted { .. })));
        assert!(a.is_from(&p));
    }

    #[test]
    fn a_handle_is_one_pointer_wide() {
        // Packets are moved by value at every layer boundary; a one-word move is a register.
        assert_eq!(
            std::mem::size_of::<PacketBuf>(),
            std::mem::size_of::<usize>()
        );
        // `None` of the inner `Option` is the null pointer, so an `Option<PacketBuf>` (what
        // a device's `receive` returns) needs a tag word: two words, still returned in two
        // registers by the x86-64 and AArch64 calling conventions.
        assert_eq!(
            std::mem::size_of::<Option<PacketBuf>>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PacketBuf>();
        check::<PacketPool>();
    }

    fn block(bytes: &[u8]) -> Arc<[u8]> {
        Arc::from(bytes)
    }

    #[test]
    fn an_attached_fragment_follows_the_own_bytes() {
        let p = pool();
        let b = block(b"0123456789");
        let mut buf = p.alloc_from_slice(b"hd").unwrap();
        buf.attach(&b, 2..7).unwrap();
        assert!(!buf.is_linear());
        assert_eq!(buf.len(), 7);
        assert_eq!(buf.as_slice(), b"hd");
        assert_eq!(buf.frag(), b"23456");
        // Shared, not copied: the block has a second owner.
        assert_eq!(Arc::strong_count(&b), 2);
        // Nothing can be appended behind the own bytes: it would land before the fragment.
        assert_eq!(buf.tailroom(), 0);
        assert!(buf.tailroom_mut().is_empty());
        assert!(matches!(
            buf.extend_from_slice(b"x"),
            Err(BufError::NoTailroom { .. })
        ));
        // A header still goes in front.
        buf.prepend_slice(b"H").unwrap();
        let mut out = [0u8; 16];
        assert_eq!(buf.copy_out(0, &mut out), 8);
        assert_eq!(&out[..8], b"Hhd23456");
        assert_eq!(buf.copy_out(4, &mut out[..2]), 2);
        assert_eq!(&out[..2], b"34");
        assert_eq!(buf.copy_out(8, &mut out), 0);
        drop(buf);
        // The dropped packet let go of the block, and its slot went back to the pool.
        assert_eq!(Arc::strong_count(&b), 1);
        assert_eq!(p.stats().in_use(), 0);
    }

    #[test]
    fn attach_refuses_bad_ranges_and_a_second_fragment() {
        let p = pool();
        let b = block(b"abc");
        let mut buf = p.alloc(4).unwrap();
        assert_eq!(buf.attach(&b, 1..4), Err(BufError::FragmentRefused));
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 2..1;
        assert_eq!(buf.attach(&b, backwards), Err(BufError::FragmentRefused));
        assert!(buf.is_linear());
        buf.attach(&b, 3..3).unwrap();
        assert!(buf.is_linear(), "an empty range attaches nothing");
        buf.attach(&b, 0..3).unwrap();
        assert_eq!(buf.attach(&b, 0..1), Err(BufError::FragmentRefused));
        assert_eq!(buf.frag(), b"abc");
    }

    #[test]
    fn strip_and_truncate_reach_into_the_fragment() {
        let p = pool();
        let b = block(b"abcdef");
        let mut buf = p.alloc_from_slice(b"12").unwrap();
        buf.attach(&b, 0..6).unwrap();
        assert!(matches!(
            buf.strip_front(9),
            Err(BufError::TooShort { needed: 9, len: 8 })
        ));
        assert_eq!(buf.len(), 8);
        buf.strip_front(3).unwrap();
        assert_eq!((buf.as_slice(), buf.frag()), (&b""[..], &b"bcdef"[..]));
        buf.truncate(3);
        assert_eq!(buf.frag(), b"bcd");
        buf.strip_front(3).unwrap();
        assert!(buf.is_linear(), "a fragment stripped to nothing is let go");
        assert!(buf.is_empty());
        assert_eq!(Arc::strong_count(&b), 1);

        let mut buf = p.alloc_from_slice(b"12").unwrap();
        buf.attach(&b, 0..6).unwrap();
        buf.truncate(1);
        assert!(buf.is_linear());
        assert_eq!(buf.as_slice(), b"1");
    }

    /// The fragment's length is kept beside the fragment (`Slot::frag_len`), so every edit
    /// that attaches, shortens, copies or lets go of a fragment must keep the two in step:
    /// the length, linearity and tailroom the layers read come from the copy.
    #[test]
    fn every_edit_keeps_the_fragment_length_in_step() {
        let p = pool();
        let b = block(b"abcdef");
        let check = |buf: &PacketBuf, own: &[u8], frag: &[u8]| {
            assert_eq!((buf.as_slice(), buf.frag()), (own, frag));
            assert_eq!(buf.len(), own.len() + frag.len());
            assert_eq!(buf.is_linear(), frag.is_empty());
            if !frag.is_empty() {
                assert_eq!(buf.tailroom(), 0, "nothing may land before the fragment");
            }
        };
        let mut buf = p.alloc_from_slice(b"12").unwrap();
        buf.attach(&b, 1..5).unwrap();
        check(&buf, b"12", b"bcde");
        buf.truncate(4);
        check(&buf, b"12", b"bc");
        let copy = buf.try_clone().unwrap();
        check(&copy, b"12", b"bc");
        assert_eq!(Arc::strong_count(&b), 3, "the copy shares the block too");
        drop(copy);
        buf.strip_front(3).unwrap();
        check(&buf, b"", b"c");
        buf.clear();
        check(&buf, b"", b"");
        assert_eq!((buf.headroom(), buf.tailroom()), (8, 16));
        assert_eq!(Arc::strong_count(&b), 1);

        // A buffer recycled through a cache with its fragment still attached comes back
        // out of the cache linear, with all its tailroom.
        let mut cache = crate::PoolCache::new(p.clone());
        let mut buf = cache.alloc_from_slice(b"xy").unwrap();
        buf.attach(&b, 0..6).unwrap();
        cache.recycle(buf);
        assert_eq!(Arc::strong_count(&b), 1, "a stocked slot holds no block");
        let again = cache.alloc(0).unwrap();
        check(&again, b"", b"");
        assert_eq!(again.tailroom(), 16);
    }

    #[test]
    fn linearize_copies_the_fragment_in() {
        let p = PacketPool::new(PoolConfig {
            headroom: 8,
            classes: vec![
                SizeClass {
                    capacity: 8,
                    count: 2,
                },
                SizeClass {
                    capacity: 32,
                    count: 1,
                },
            ],
        })
        .unwrap();
        let b = block(b"0123456789abcdef");
        // Fits the own tailroom: copied there, same buffer.
        let mut small = p.alloc_from_slice(b"h").unwrap();
        small.attach(&b, 0..4).unwrap();
        small.linearize().unwrap();
        assert!(small.is_linear());
        assert_eq!(small.as_slice(), b"h0123");
        // Too big for it: a buffer of a larger class takes the whole packet.
        let mut big = p.alloc_from_slice(b"hdr").unwrap();
        big.prepend_slice(b"ip").unwrap();
        big.attach(&b, 0..16).unwrap();
        big.linearize().unwrap();
        assert_eq!(big.as_slice(), b"iphdr0123456789abcdef");
        assert_eq!(big.capacity(), 40);
        assert_eq!(p.stats().in_use(), 2, "the small buffer went back");
        // No buffer left for it: an error, and the packet is as it was.
        let mut third = p.alloc_from_slice(b"x").unwrap();
        third.attach(&b, 0..16).unwrap();
        assert!(matches!(
            third.linearize(),
            Err(PoolError::Exhausted { .. })
        ));
        assert_eq!((third.as_slice(), third.frag()), (&b"x"[..], &b[..]));
        drop((small, big, third));
        assert_eq!(Arc::strong_count(&b), 1);
    }

    #[test]
    fn clone_shares_the_fragment() {
        let p = pool();
        let b = block(b"xyz");
        let mut buf = p.alloc_from_slice(b"h").unwrap();
        buf.attach(&b, 1..3).unwrap();
        let copy = buf.try_clone().unwrap();
        assert_eq!((copy.as_slice(), copy.frag()), (&b"h"[..], &b"yz"[..]));
        assert_eq!(Arc::strong_count(&b), 3);
    }
}
