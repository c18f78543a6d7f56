//! The packet handle: a window `start..end` onto one pooled buffer.

use std::fmt;
use std::ops::{Deref, DerefMut};
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
        })
    }

    /// The size class the slot belongs to.
    pub(crate) fn class(&self) -> usize {
        self.class
    }

    /// Bytes in the window.
    #[inline]
    fn len(&self) -> usize {
        self.end - self.start
    }

    /// Free bytes behind the window.
    #[inline]
    fn tailroom(&self) -> usize {
        self.storage.len() - self.end
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

    /// Length of the packet in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.slot().len()
    }

    /// Whether the packet has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        let s = self.slot();
        s.end == s.start
    }

    /// The packet's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        let s = self.slot();
        &s.storage[s.start..s.end]
    }

    /// The packet's bytes, writable (a layer fixing up a checksum, a fault injector flipping
    /// a bit).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let s = self.slot_mut();
        &mut s.storage[s.start..s.end]
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
    pub fn strip_front(&mut self, n: usize) -> Result<(), BufError> {
        let s = self.slot_mut();
        if n > s.len() {
            return Err(BufError::TooShort {
                needed: n,
                len: s.len(),
            });
        }
        s.start += n;
        Ok(())
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
    pub fn truncate(&mut self, len: usize) {
        let s = self.slot_mut();
        if len < s.len() {
            s.end = s.start + len;
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
        &mut s.storage[s.end..]
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
    fn drop(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            if let Some(pool) = slot.pool.take() {
                pool.release(slot);
            }
        }
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
}
